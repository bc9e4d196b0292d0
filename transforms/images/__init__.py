"""Images: reading them safely, TensorFlow's verdict on them, EXIF orientation, their hashes."""
