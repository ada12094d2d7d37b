namespace VirtioSharp.Queues;

/// <summary>Outcome of a queue operation on a hot path.</summary>
public enum QueueStatus : byte
{
    /// <summary>Done.</summary>
    Ok = 0,
    /// <summary>Nothing to take (no used buffers for the driver, no available chains for the device).</summary>
    Empty,
    /// <summary>Not enough free descriptors; retry after completions.</summary>
    NoSpace,
    /// <summary>A DMA mapping failed; see the DMA status. Nothing was added.</summary>
    MapFailed,
    /// <summary>The peer broke a ring rule; the queue is now broken (see the error) and stays so until reset.</summary>
    Broken,
}
