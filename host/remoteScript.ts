/** A shell script run over SSH as `bash -c '<script>' <name> <args…>`: no file to copy first. */
export function inlineScript(script: string, name: string, args: readonly (string | number)[]): string {
    return ["bash", "-c", shellQuote(script), shellQuote(name), ...args.map((a) => shellQuote(String(a)))].join(" ");
}

/** Single-quotes `text` for POSIX shells. */
export function shellQuote(text: string): string {
    return /^[A-Za-z0-9_./:@=+-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}
