// SPEC.md §9.6: the storage protocol's request handler, independent of transport: BEGIN_STORAGE
// streams on circuits and direct TLS links both feed it decoded requests and send back what it returns.
import { err, errorCode } from '../src/errors';
import { errorResponse, type StorageRequest, type StorageResponse } from '../src/storage/protocol';
import type { ShareStore } from './share-store';
import type { NameService } from './name-service';

export interface RequestContext {
  /** True on a BEGIN_STORAGE stream (the node does not know who asks); false on a direct link. */
  viaCircuit: boolean;
}

/**
 * Moderation hook (SPEC.md §9.8.5, §10.6), called before every request touches the store. Refuse by
 * throwing a BitcloudError with a stable code (e.g. POLICY_DENIED, detail naming the moderator);
 * the refusal goes back to the requester as an error response. The rule that unmoderated nodes take
 * uploads only on circuits also belongs here.
 */
export type PolicyCheck = (req: StorageRequest, ctx: RequestContext) => void | Promise<void>;

/** No moderation: every request is allowed (the default until policies land). */
export const allowAll: PolicyCheck = () => {};

/** Answer one request. Never throws: every failure becomes an error response with a stable code. */
export async function handleRequest(store: ShareStore, req: StorageRequest, ctx: RequestContext, policyCheck: PolicyCheck = allowAll, names?: NameService): Promise<StorageResponse> {
  store.metrics.requests.inc({ op: req.type, via: ctx.viaCircuit ? 'circuit' : 'direct' });
  try {
    await policyCheck(req, ctx);
    switch (req.type) {
      case 'put': {
        const r = await store.put(req.id, req.data, req.leaseSeconds);
        return { type: 'put', expiresAt: r.expiresAt };
      }
      case 'get': {
        const r = await store.get(req.id, req.offset, req.length);
        return { type: 'get', offset: req.offset, data: r.data, totalSize: r.totalSize };
      }
      case 'has':
        return { type: 'has', present: store.has(req.ids) };
      case 'audit':
        return { type: 'audit', proof: await store.audit(req.id, req.nonce) };
      case 'stat':
        return { type: 'stat', ...store.stat() };
      case 'renew':
        return { type: 'renew', expiresAt: await store.renew(req.ids, req.leaseSeconds) };
      case 'dhtGet':
      case 'dhtPut':
        // SPEC.md §9.14.1: name lookups on the client's behalf; nodes without a DHT refuse them.
        if (!names) throw err('DHT_NO_NODES', 'this node runs no DHT');
        return await names.handle(req);
      case 'challenge':
        return { type: 'challenge', answer: await store.auditChallenge(req.id, req.nonce, req.blocks) };
    }
  } catch (e) {
    store.metrics.errors.inc({ code: errorCode(e) });
    return errorResponse(e);
  }
}
