// SPEC.md §8.3: the per-link receipt exchange. It moved to src/bandwidth/link-receipts.ts because
// storage nodes run it too (STYLE.md §6: relay/ and storage/ share code only through src/);
// this module keeps the relay-side import path.
export { LinkReceipts, epochAt, type LinkReceiptsOptions, type Disagreement, type DisagreementReason } from '../src/bandwidth/link-receipts';
