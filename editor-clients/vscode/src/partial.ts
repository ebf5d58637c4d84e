// Partial acceptance (a word or a line of a suggestion at a time), which VS Code's stable API does not
// report to the provider. The extension binds the accept-word and accept-line keys to its own commands,
// which run VS Code's and then report how much of the suggestion is now in the document; every edit is
// also followed here so that text typed through a suggestion counts as part of it. Pure: offsets are
// document offsets in UTF-16 code units, which is also how the server counts an accepted length.

export interface Change {
  /** Offset where the replaced range starts, its length, and the text put there. */
  offset: number;
  removed: number;
  text: string;
}

interface Offer {
  id: string;
  offset: number;
  text: string;
  /** Code units of `text` that are in the document, from `offset` on. */
  taken: number;
}

export interface Accepted {
  id: string;
  length: number;
}

const KEPT = 4; // offers followed per document: the newest ones

export class PartialAcceptance {
  private offers = new Map<string, Offer[]>();

  /** A suggestion shown in `uri` at `offset` (its accept command's item id). */
  offer(uri: string, id: string, offset: number, text: string): void {
    const list = (this.offers.get(uri) ?? []).filter((o) => o.id !== id);
    list.unshift({ id, offset, text, taken: 0 });
    this.offers.set(uri, list.slice(0, KEPT));
  }

  /**
   * Follow one edit of `uri`. When it was made by an accept-word or accept-line command (`accepting`)
   * and continues a suggestion, return that suggestion's id and the length of it now accepted.
   */
  changed(uri: string, change: Change, accepting: boolean): Accepted | undefined {
    const list = this.offers.get(uri);
    if (!list) {
      return undefined;
    }
    let found: Accepted | undefined;
    const kept: Offer[] = [];
    // A suggestion already partly taken is the one being continued, before a newer one at the same place.
    const order = [...list].sort((a, b) => Number(b.taken > 0) - Number(a.taken > 0));
    for (const offer of order) {
      const end = offer.offset + offer.taken;
      if (change.removed === 0 && change.offset === end && change.text.length > 0 &&
          offer.text.startsWith(change.text, offer.taken) && found === undefined) {
        offer.taken += change.text.length;
        if (accepting) {
          found = { id: offer.id, length: offer.taken };
        }
        kept.push(offer);
      } else if (change.offset + change.removed <= offer.offset && change.offset < end) {
        offer.offset += change.text.length - change.removed; // an edit before it moves it
        kept.push(offer);
      } else if (change.offset > end) {
        kept.push(offer); // an edit after what was taken of it
      }
      // Anything else edits the suggestion's own region: it is no longer followed.
    }
    const remaining = list.filter((o) => kept.includes(o));
    if (remaining.length) {
      this.offers.set(uri, remaining);
    } else {
      this.offers.delete(uri);
    }
    return found;
  }

  forget(uri: string): void {
    this.offers.delete(uri);
  }
}
