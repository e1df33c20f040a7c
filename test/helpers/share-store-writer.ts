// Child process of test/unit/storage-share-store-crash.test.ts: opens a ShareStore in argv[2] and
// puts random shares, `argv[3]` at a time, for ever; each acknowledged put prints its share id
// (hex) on its own line the moment store.put resolves (what a node would answer). The test kills
// the process with SIGKILL in the middle of a batch and checks every printed share after reopening.
import { randomBytes } from '../../src/crypto/primitives';
import { shareId } from '../../src/storage/share';
import { ShareStore } from '../../storage/share-store';

const dir = process.argv[2];
const concurrent = Number(process.argv[3] ?? 8);
const store = await ShareStore.open({ dir, quotaBytes: 2 ** 32 });
process.stdout.write('ready\n');
async function worker(): Promise<void> {
  for (;;) {
    const data = randomBytes(16 * 1024 + Math.floor(Math.random() * 64 * 1024));
    const id = shareId(data);
    await store.put(id, data, 30 * 86_400);
    process.stdout.write(`${id.toString('hex')}\n`);
  }
}
await Promise.all(Array.from({ length: concurrent }, worker));
