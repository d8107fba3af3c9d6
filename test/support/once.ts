/** `make` run once, by whichever caller comes first, on first use; every caller gets its result. */
export function once<T>(make: () => Promise<T>): () => Promise<T> {
    let made: Promise<T> | undefined;
    return () => {
        made ??= make();
        return made;
    };
}
