"""The way back: TFRecords read, decoded into canonical records, written as other formats."""
