// Restarts of the language server, one at a time. Several events can ask for one together: granting
// workspace trust fires the trust event and, where selftune.serverPath is in the remote machine's settings
// (code-server, Remote SSH), a change of that setting. Two overlapping restarts would start two clients, and
// the second could not register the server's commands while the first held them ("command 'selftune.accept'
// already exists"). Pure: the restart itself is passed in.

/**
 * The restart job calls `reading()` just before it reads what the new server depends on (the settings):
 * a request made before that is served by this run; one made after it gets one more run, shared by
 * every request made meanwhile.
 */
export type RestartJob = (reading: () => void) => Promise<void>;

export class Restarts {
  private running: Promise<void> | undefined;
  private wanted = false;

  constructor(private readonly job: RestartJob) {}

  /** Ask for a restart; resolves once a run that read the settings after this request has ended. */
  request(): Promise<void> {
    this.wanted = true;
    if (!this.running) {
      this.running = this.loop();
    }
    return this.running;
  }

  private async loop(): Promise<void> {
    try {
      while (this.wanted) {
        let read = false;
        try {
          await this.job(() => {
            read = true;
            this.wanted = false;
          });
        } catch {
          // The job reports its own failures.
        }
        if (!read) {
          this.wanted = false; // it failed before reading anything: no retry loop
        }
      }
    } finally {
      // Cleared in the same step as the last check of `wanted`, so a later request starts a new loop.
      this.running = undefined;
    }
  }
}
