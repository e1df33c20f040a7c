// Protocol constants that both ends of a circuit obey (SPEC.md §7b): the client counts against
// them when it builds, the relay enforces them. Neither side imports the other for them.

/** tor-spec 5.6: at most 8 RELAY_EARLY cells per circuit (SPEC.md §7b.4). */
export const MAX_RELAY_EARLY = 8;

/** SPEC.md §7b.9: streams one circuit may have open at once at the node it ends at (a relay's default, a hidden node's end of a rendezvous circuit); beyond, END(RESOURCELIMIT). */
export const MAX_STREAMS_PER_CIRCUIT = 512;
