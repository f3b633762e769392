"""What the benchmarks' worker processes share: timing a train step on request."""

import time


def serve_steps(connection, train_step, images, masks):
  """Warms train_step up (tracing), says "ready", then, for each count of steps the
  coordinator sends, runs that many and sends back their wall times; None ends."""
  for _ in range(2):
    train_step(images, masks)[0].numpy()
  connection.send("ready")
  while True:
    steps = connection.recv()
    if steps is None:
      return
    times = []
    for _ in range(steps):
      start = time.perf_counter()
      train_step(images, masks)[0].numpy()
      times.append(time.perf_counter() - start)
    connection.send(times)
