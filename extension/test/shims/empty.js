// Stands in for the TF.js backends face-api imports (test/face_api.mjs
// registers the CPU backend itself).
export {};
