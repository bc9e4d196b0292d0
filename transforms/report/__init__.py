"""The dataset report: statistics of written examples (`stats`), the pictures drawn from a
bounded sample of them (`thumbnails`) and the self-contained page that shows both (`page`)."""
