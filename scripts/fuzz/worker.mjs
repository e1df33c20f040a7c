// Worker-thread bootstrap for the fuzz runner: TypeScript through tsx (as bin/run-ts.js does for
// the main thread), then the worker proper.
import { register } from 'tsx/esm/api';
register();
await import('./worker-main.ts');
