namespace VirtioSharp.Storage;

/// <summary>How a <see cref="FileStorage"/> queue performs its I/O.</summary>
public enum FileAioMode
{
    /// <summary>One io_uring per virtqueue; falls back to <see cref="Threads"/> where io_uring cannot be set up (CLI: <c>io_uring</c>).</summary>
    IoUring,
    /// <summary>A small pool of worker threads per virtqueue doing preadv2/pwritev2 (CLI: <c>threads</c>).</summary>
    Threads,
    /// <summary>Each request runs inside Submit on the queue's own thread; one request at a time (CLI: <c>sync</c>).</summary>
    Sync,
}
