/** The arithmetic the bench's reports share. */

export const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);

export const median = (xs: readonly number[]) => {
    const sorted = [...xs].sort((a, b) => a - b);
    const mid = Math.floor(sorted.length / 2);
    return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

/** The value at fraction `p` (0–1) of an ascending list; NaN for an empty one. */
export const percentile = (sorted: readonly number[], p: number) =>
    sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];

/** Progress lines of one part of the bench, tagged and timed: `[tag 12:34:56] line`. */
export const benchLogger = (tag: string) => (line: string) => console.log(`[${tag} ${new Date().toISOString().slice(11, 19)}] ${line}`);
