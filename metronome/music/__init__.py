"""The runner's own music under the coach (issue 17): playlists, decoding, loudness, and the ring the kernel reads.

Transport apart from meaning: :mod:`.playlist` turns ``--music`` arguments into a list of files, :mod:`.decode`
turns one file into frames at the output rate, :mod:`.loudness` says how loud they are, :mod:`.source` strings the
tracks into one gapless stream and :mod:`.ring` writes that stream into the engine's ring (the live worker thread
in :mod:`.feeder`, the renderer before each block).
"""
