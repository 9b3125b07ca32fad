// Stands in for the TF.js backends face-api imports: the extension registers
// the WebAssembly backend itself and ships no other.
export {};
