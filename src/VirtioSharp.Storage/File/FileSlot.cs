using VirtioSharp.Devices.Block;

namespace VirtioSharp.Storage;

/// <summary>
/// A request in flight on a file queue, preallocated (one per unit of queue depth). Owned by the queue's thread except
/// while a worker runs it; the hand-over goes through the worker pool's locks, which order the accesses.
/// </summary>
internal struct FileSlot
{
    public BlockRequest Request;
    /// <summary>Copied through an aligned bounce buffer (O_DIRECT with unaligned memory).</summary>
    public bool Bounced;
    /// <summary>Bytes already transferred when a worker takes over (an io_uring transfer cut short).</summary>
    public ulong Resume;
    /// <summary>The outcome, a positive errno or 0.</summary>
    public int Error;
}
