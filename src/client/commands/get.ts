// `bitcloud get CAP [-o FILE] [--json] [--direct]` (SPEC.md §9.9): fetch any k shares of every
// chunk (fastest nodes first), verify hashes and AEAD tags, rebuild, and write the file atomically;
// an interrupted get resumes from its part file. `-o -` writes the file to stdout, and everything
// else (progress, messages, the --json result) to stderr (SPEC.md §9.9.1). Wiring only.
import type { CommandModule } from 'yargs';
import { fileOptions, JSON_OPTION, DIRECT_OPTION } from './options';
import { parseCapability } from '../../storage/capability';
import { fetchManifest, getFile, STDOUT_OUTPUT } from '../storage-client-get';
import { getFolder, isFolderManifest } from '../storage-client-folder';
import { progressMode, progressReporter } from '../storage-client-progress';
import { runStorageCommand } from '../storage-client-setup';
import { nodesForClass } from '../../moderation/placement';
import { authoritySource } from '../../moderation/sources';

type Args = { cap: string; output?: string; json: boolean; direct: boolean; config?: string; 'data-dir'?: string; 'log-level'?: string };

export async function getCommand(a: Args): Promise<number> {
  const progress = progressReporter('get', progressMode(a.json));
  // SPEC.md §9.9.1: with `-o -` stdout carries the file's bytes and nothing else.
  const toStdout = a.output === STDOUT_OUTPUT;
  const results = toStdout ? process.stderr : process.stdout;
  return runStorageCommand('get', a, () => ({ cap: parseCapability(a.cap.trim()) }), async (session, { cap }) => {
    const t0 = Date.now();
    // SPEC.md §10.8: shares of a class were placed over the nodes admitting it; ask those first.
    const sources = session.network.dirCfg.authorities.map((x) => authoritySource(x.url));
    const placementFor = (cls: string) => nodesForClass(session.client.nodes, cls, sources);
    // SPEC.md §9.15: a folder is fetched file by file into the folder -o names.
    const stats = { corruptShares: 0, missingShares: 0, sharesFetched: 0 };
    const m = await fetchManifest(session.client, cap, stats);
    // A folder cannot go to stdout: getFile refuses it (IO_IS_A_DIRECTORY).
    if (isFolderManifest(m) && !toStdout) {
      // Without -o: the stored name, never an existing folder but an unfinished get's own (§9.9.1).
      const f = await getFolder(session.client, cap, a.output, { manifest: m, placementFor });
      progress.stop();
      const seconds = (Date.now() - t0) / 1000;
      if (a.json) process.stdout.write(JSON.stringify({ ok: true, folder: true, path: f.path, files: f.files, size: f.size, transport: a.direct ? 'direct' : 'circuits', seconds }) + '\n');
      else process.stdout.write(f.path + '\n');
      return 0;
    }
    const r = await getFile(session.client, cap, { manifest: m, stats, output: a.output, stdout: process.stdout, placementFor, onProgress: (d, t) => progress.update(d, t) });
    progress.stop();
    const seconds = (Date.now() - t0) / 1000;
    if (a.json) {
      results.write(JSON.stringify({
        ok: true, path: r.path, size: r.size, name: r.name, contentType: r.contentType, chunks: r.chunks,
        resumedChunks: r.resumedChunks, corruptShares: r.corruptShares, missingShares: r.missingShares, sharesFetched: r.sharesFetched,
        unreachableNodes: r.unreachableNodes, transport: a.direct ? 'direct' : 'circuits', seconds, mbps: r.size / 1e6 / Math.max(seconds, 0.001),
      }) + '\n');
    } else {
      if (r.corruptShares > 0) process.stderr.write(`bitcloud get: ${r.corruptShares} corrupt share(s) detected and replaced from others\n`);
      if (r.resumedChunks > 0) process.stderr.write(`bitcloud get: resumed: ${r.resumedChunks} of ${r.chunks} chunks were already here\n`);
      if (!toStdout) process.stdout.write(r.path + '\n');
    }
    return 0;
  }, () => progress.stop(), { results });
}

export const getCommandModule: CommandModule<object, Args> = {
  command: 'get <cap>',
  describe: 'Fetch a file by its capability (bitcloud:<id>#<key>), verify it and write it atomically; resumes.',
  builder: (y) => fileOptions(y
    .positional('cap', { type: 'string', describe: 'The read capability printed by put' })
    .option('output', { alias: 'o', type: 'string', describe: 'Output file (replaced if it exists), or output folder for a stored folder (default: the stored name, in the current folder; an existing file or folder of that name is not replaced or written into); - writes the file to stdout (a file named - is ./-)' })
    .option('json', JSON_OPTION)
    .option('direct', DIRECT_OPTION)) as never,
  handler: async (a) => { process.exitCode = await getCommand(a); },
};
