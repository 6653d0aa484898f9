/* `peermesh history`: prints the saved message history.
 *
 *   peermesh history [--data-dir DIR] [--mesh NAME] [--limit N] [--json]
 *
 * Reads DATA_DIR/history.db read-only (it never creates or migrates it) and
 * prints one line per message, oldest first, in the local time zone:
 *
 *   2026-11-25 21:40:03 [lobby] <alice> hello there     Chat
 *   2026-11-25 21:40:01 [lobby] * alice joined          Join
 *   2026-11-25 21:41:00 [lobby] * alice left            Leave
 *   2026-11-25 21:42:00 [lobby] Poke {"n":1}            anything else
 *
 * Message text comes from the network: control characters, C1 controls,
 * bidirectional overrides and invalid UTF-8 are printed as '?' so a hostile
 * message cannot drive the terminal. With --json each line is one object:
 *   {"id":HEX,"mesh":S,"author":HEX,"seq":N,"time":MS,"received":MS,
 *    "hops":N,"own":BOOL,"action":S,"body":JSON}
 * where body is the stored JSON with the same characters written as \u
 * escapes (the same JSON value) and whitespace between tokens as spaces, so
 * an object never spans lines. */
#ifndef PM_IO_CMD_HISTORY_H
#define PM_IO_CMD_HISTORY_H

#include <stdio.h>

/* argv[0] is "history"; the rest are its options. Output goes to `out`,
 * diagnostics to `err`. Returns the process exit code: 0 (also when there is
 * no history yet), 1 when the database cannot be read or output cannot be
 * written, 2 for a bad option or value (a usage line is printed). Resets
 * getopt's state (optind) before parsing, so it may be called repeatedly. */
int pm_cmd_history(int argc, char **argv, FILE *out, FILE *err);

#endif
