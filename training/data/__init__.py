"""The images: found in a folder, streamed into batches, augmented and laundered; folders written whole."""
