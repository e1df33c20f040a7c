// SPEC.md §9.10: one exit-status rule for every `bitcloud` command: 2 when the caller's input is
// wrong (CAP_MALFORMED, NAME_MALFORMED, CONFIG_INVALID, STORAGE_CODING_INVALID, every IO_* code,
// every KEY_* code, and the POLICY_BAD_* codes of a moderator's input), 1 for every other failure;
// 141 (128 + SIGPIPE), unreported, when stdout's reader went away (IO_OUTPUT_CLOSED).
import { afterEach, describe, expect, it, vi } from 'vitest';
import yargs, { type CommandModule } from 'yargs';
import { ALL_ERROR_CODES, ERROR_CODES, err, layerOf, type ErrorCode } from '../../src/errors';
import { reportFailure } from '../../src/client/storage-client-setup';
import { exitStatusOf } from '../../src/client/exit-status';
import * as clientConfig from '../../src/dir/client-config';
import { walletCommandModule } from '../../src/client/commands/wallet';
import { moderatorCommandModule } from '../../src/client/commands/moderator';
import { rewardsCommandModule } from '../../src/client/commands/rewards';
import { consensusCommandModule } from '../../src/client/commands/consensus';
import { proxyCommandModule } from '../../src/client/commands/proxy';
import { getCommandModule } from '../../src/client/commands/get';

afterEach(() => { vi.restoreAllMocks(); process.exitCode = undefined; });

/** The codes whose failure is the caller's wrong input (exit 2), SPEC.md §9.10. */
const USAGE = new Set<string>([
  'CAP_MALFORMED', 'NAME_MALFORMED', 'CONFIG_INVALID', 'STORAGE_CODING_INVALID',
  'POLICY_BAD_ID', 'POLICY_BAD_TAG', 'POLICY_BAD_CLASS', 'POLICY_BAD_MODERATOR', 'POLICY_NOT_PUBLIC',
]);
const wanted = (code: string) => (code === 'IO_OUTPUT_CLOSED' ? 141 : USAGE.has(code) || layerOf(code as ErrorCode) === 'IO' || code.startsWith('KEY_') ? 2 : 1);

/** The exit status reportFailure gives a failure with `code`, its JSON document kept off stdout. */
function statusOf(code: ErrorCode): number {
  const write = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  try {
    return reportFailure('get', err(code, 'test'), true);
  } finally {
    write.mockRestore();
  }
}

describe('exit status of a failed command (SPEC.md §9.10)', () => {
  it('IO_NOT_A_DIRECTORY exits with 2, as every IO_* code does but IO_OUTPUT_CLOSED (141)', () => {
    expect(statusOf('IO_NOT_A_DIRECTORY')).toBe(2);
    for (const code of Object.keys(ERROR_CODES.IO) as (keyof typeof ERROR_CODES.IO)[]) {
      expect([code, statusOf(code)]).toEqual([code, code === 'IO_OUTPUT_CLOSED' ? 141 : 2]);
    }
  });

  it('IO_OUTPUT_CLOSED (stdout\'s reader went away) exits with 141 and prints nothing, plain or --json', () => {
    const out = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const errw = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    expect(reportFailure('get', err('IO_OUTPUT_CLOSED', 'test'), false)).toBe(141);
    expect(reportFailure('get', err('IO_OUTPUT_CLOSED', 'test'), true)).toBe(141);
    expect(out).not.toHaveBeenCalled();
    expect(errw).not.toHaveBeenCalled();
  });

  it('2 for exactly the usage codes, the IO layer, KEY_* and the moderator input codes; 1 for every other code', () => {
    for (const code of ALL_ERROR_CODES) {
      expect([code, statusOf(code)]).toEqual([code, wanted(code)]);
      expect([code, exitStatusOf(code)]).toEqual([code, wanted(code)]);
    }
    // Not the caller's input: a folder in use, a fetched policy's signature.
    for (const code of ['DATA_DIR_LOCKED', 'POLICY_BAD_SIGNATURE']) expect([code, exitStatusOf(code)]).toEqual([code, 1]);
    // The caller's input: a file to approve that is not public content.
    expect(exitStatusOf('POLICY_NOT_PUBLIC')).toBe(2);
    // A failure that is not a BitcloudError is INTERNAL: 1.
    const write = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    expect(reportFailure('get', new Error('boom'), true)).toBe(1);
    write.mockRestore();
  });

  // Every command reads the client configuration first: a failure there carries `code` out of the
  // command's own failure path, and the exit status it sets is the shared rule's.
  const commands: [string, CommandModule<object, never>, string[]][] = [
    ['wallet address', walletCommandModule as CommandModule<object, never>, ['wallet', 'address']],
    ['wallet send', walletCommandModule as CommandModule<object, never>, ['wallet', 'send', 'ab'.repeat(32), '1']],
    ['moderator list', moderatorCommandModule as CommandModule<object, never>, ['moderator', 'list', '--moderator', 'ab'.repeat(32)]],
    ['rewards', rewardsCommandModule as CommandModule<object, never>, ['rewards']],
    ['consensus', consensusCommandModule as CommandModule<object, never>, ['consensus']],
    ['proxy', proxyCommandModule as CommandModule<object, never>, ['proxy']],
    ['get', getCommandModule as CommandModule<object, never>, ['get', 'bitcloud:vkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkvkva#ijbeeqscijbeeqscijbeeqscijbeeqscijbeeqscijbeeqscijba']],
  ];
  const codes: ErrorCode[] = ['IO_MODE_UNSUPPORTED', 'IO_STATE_UNREADABLE', 'KEY_CORRUPT', 'CONFIG_INVALID', 'POLICY_BAD_TAG', 'POLICY_NOT_PUBLIC', 'DATA_DIR_LOCKED', 'CONSENSUS_NOT_AVAILABLE'];

  it.each(commands)('%s exits by the same rule', async (_name, module, argv) => {
    vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    for (const code of codes) {
      vi.spyOn(clientConfig, 'loadDirClientConfig').mockImplementation(() => { throw err(code, 'test'); });
      process.exitCode = undefined;
      await yargs([]).command(module).exitProcess(false).fail(false).parseAsync([...argv, '--json']);
      expect([code, process.exitCode]).toEqual([code, wanted(code)]);
    }
  });
});
