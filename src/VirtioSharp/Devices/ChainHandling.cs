namespace VirtioSharp.Devices;

/// <summary>Special results of <see cref="IChainHandler{TMem}.Handle"/>.</summary>
public static class ChainHandling
{
    /// <summary>
    /// The handler keeps the chain (asynchronous I/O in flight) and finishes it later on the owner thread with
    /// <see cref="QueueService{TMem}.Complete"/>; no used length can be this large (a chain holds at most 4 GiB - 1).
    /// </summary>
    public const uint Pending = uint.MaxValue;
}
