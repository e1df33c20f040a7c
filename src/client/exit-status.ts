// The exit status of a failed `bitcloud` command, one rule for every subcommand (SPEC.md §9.10).
import { ERROR_CODES } from '../errors';

/**
 * Codes that mean "the caller's input is wrong" (exit 2) rather than "it failed" (exit 1),
 * SPEC.md §9.10: the usage codes named there; every code of the IO layer and every KEY_* code (a
 * key file the caller named), taken from their declarations in src/errors.ts so that such a code
 * added there exits with 2 without being listed here too (DATA_DIR_LOCKED, declared with the key
 * codes, is not one: a folder in use is no wrong input); and the POLICY_BAD_* codes of a
 * moderator's own input, with POLICY_NOT_PUBLIC (asked to approve content that is not public;
 * POLICY_BAD_SIGNATURE, which a fetched policy earns, is not one). IO_OUTPUT_CLOSED, of the IO layer
 * too, is taken first by READER_GONE_CODES below.
 */
const USAGE_CODES: ReadonlySet<string> = new Set([
  'CAP_MALFORMED', 'NAME_MALFORMED', 'CONFIG_INVALID', 'STORAGE_CODING_INVALID',
  ...Object.keys(ERROR_CODES.IO),
  ...Object.keys(ERROR_CODES.KEY).filter((c) => c.startsWith('KEY_')),
  'POLICY_BAD_ID', 'POLICY_BAD_TAG', 'POLICY_BAD_CLASS', 'POLICY_BAD_MODERATOR', 'POLICY_NOT_PUBLIC',
]);

/** 128 + SIGPIPE: what a shell reports for `cat` whose reader went away (SPEC.md §9.10). */
export const SIGPIPE_STATUS = 141;

/**
 * Codes that mean "the reader of stdout went away" (SPEC.md §9.9.1, §9.10): not a failure to
 * report but the end a C tool meets as SIGPIPE. The command prints nothing (no line, no `--json`
 * document) and exits with SIGPIPE_STATUS, before the IO_* rule above.
 */
const READER_GONE_CODES: ReadonlySet<string> = new Set(['IO_OUTPUT_CLOSED']);

/** Whether a failure with `code` is reported (a line or `--json` document); not when its reader went away. */
export function isReportedFailure(code: string): boolean {
  return !READER_GONE_CODES.has(code);
}

/**
 * A failed command's exit status for its code (SPEC.md §9.10): SIGPIPE_STATUS when stdout's
 * reader went away, 2 for a usage code, else 1.
 */
export function exitStatusOf(code: string): number {
  if (READER_GONE_CODES.has(code)) return SIGPIPE_STATUS;
  return USAGE_CODES.has(code) ? 2 : 1;
}
