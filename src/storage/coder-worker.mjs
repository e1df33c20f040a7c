// Worker-thread bootstrap for the chunk coder pool (coder-pool.ts): TypeScript through tsx (as
// bin/run-ts.js does for the main thread), then the worker proper.
import { register } from 'tsx/esm/api';
register();
await import('./coder-worker-main.ts');
