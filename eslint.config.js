// `npm run lint`: ESLint with typescript-eslint, type-aware (SPEC.md §11.7). The rule set is
// eslint's and typescript-eslint's recommended ones, plus two that catch real bugs here:
// `@typescript-eslint/no-floating-promises` (a promise nobody awaits loses its rejection) and
// `import-x/no-cycle` (modules form no import cycle, SPEC.md §11.3). Style is left to review.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import { importX, createNodeResolver } from 'eslint-plugin-import-x';
import globals from 'globals';

export default tseslint.config(
  { ignores: ['node_modules/**', '.localnet/**', 'coverage/**', '**/*.d.ts'] },
  {
    files: ['**/*.{js,mjs}'],
    extends: [js.configs.recommended],
    languageOptions: { globals: globals.node, sourceType: 'module' },
  },
  {
    files: ['{src,relay,directory,storage,scripts,test}/**/*.ts', 'vitest.config.ts'],
    extends: [js.configs.recommended, ...tseslint.configs.recommended],
    plugins: { 'import-x': importX },
    languageOptions: {
      globals: globals.node,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    settings: {
      // import-x parses only files whose extension it is told of; without these the cycle rule
      // would follow no import at all.
      'import-x/extensions': ['.ts', '.js', '.mjs'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
      'import-x/external-module-folders': ['node_modules', 'node_modules/@types'],
      'import-x/resolver-next': [createNodeResolver({ extensions: ['.ts', '.js', '.mjs', '.json'] })],
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      // Parameters a signature requires but a body does not use are named with a leading `_`.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // A style rule left off: it flags `let x = default; try { x = … } catch {}` and the last
      // `o += n` of a byte cursor.
      'no-useless-assignment': 'off',
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      // Which folder may import which (SPEC.md §11.3).
      'import-x/no-restricted-paths': ['error', {
        basePath: import.meta.dirname,
        zones: [
          { target: ['src/!(bin)/**', 'src/*.ts'], from: ['relay', 'directory', 'storage', 'scripts', 'test'],
            message: 'src/ is shared code: what two roles share moves to src/, and only src/bin/ starts a daemon.' },
          { target: 'src/bin', from: ['scripts', 'test'] },
          { target: 'relay', from: ['directory', 'storage', 'scripts', 'test'], message: 'Daemons share code only through src/.' },
          { target: 'directory', from: ['relay', 'storage', 'scripts', 'test'], message: 'Daemons share code only through src/.' },
          { target: 'storage', from: ['relay', 'directory', 'scripts', 'test'], message: 'Daemons share code only through src/.' },
          { target: 'test', from: ['scripts'], message: 'Tests start scripts as processes; they do not import them.' },
        ],
      }],
    },
  },
  {
    // One door for cryptography (SPEC.md §11.4): primitives only through src/crypto/.
    files: ['{src,relay,directory,storage,scripts}/**/*.ts'],
    ignores: ['src/crypto/**'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: ['sodium-native', 'node:crypto', 'crypto', '@peculiar/x509'].map((name) => ({
          name, message: 'Primitives come only from src/crypto/ (SPEC.md §11.4).',
        })),
        patterns: [{ group: ['@noble/*'], message: 'Primitives come only from src/crypto/ (SPEC.md §11.4).' }],
      }],
    },
  },
);
