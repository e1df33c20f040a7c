#!/usr/bin/env node
// Runs a TypeScript entry point through tsx, resolved from this package (works from any cwd).
import { register } from 'tsx/esm/api';
import { pathToFileURL } from 'node:url';
import path from 'node:path';
register();
const [entry, ...rest] = process.argv.slice(2);
if (!entry) { console.error('usage: run-ts.js FILE.ts [args...]'); process.exit(2); }
process.argv = [process.argv[0], entry, ...rest];
await import(pathToFileURL(path.resolve(entry)).href);
