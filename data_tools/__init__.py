"""Stages that make the data: download (or synthesise) the Oxford-IIIT Pet archives, turn
them into a petset, and partition the petset into TFRecord splits."""
