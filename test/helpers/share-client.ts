// A stand-in for the StorageClient calls that read one share (fingerprints, isDead, getShare): every
// node answers `bytes`, except that the first node `rankNodes` places `id` on fails with `hostile`
// when one is given. Each node asked is pushed onto `asked`, in order.
import type { StorageClient } from '../../src/client/storage-client';
import { rankNodes } from '../../src/storage/placement';

export function shareClient(o: { fps: string[]; id: Buffer; bytes: Uint8Array; hostile: Error | null; asked: string[] }): StorageClient {
  const first = rankNodes(o.id, o.fps)[0];
  return {
    fingerprints: o.fps,
    isDead: () => false,
    getShare: (fp: string) => {
      o.asked.push(fp);
      if (o.hostile && fp === first) return Promise.reject(o.hostile);
      return Promise.resolve(Buffer.from(o.bytes));
    },
  } as unknown as StorageClient;
}
