namespace VirtioSharp.Devices.Block;

/// <summary>
/// Storage behind a virtio-blk device that completes requests asynchronously (io_uring, a thread pool, an NBD
/// connection): many requests in flight per queue, each queue with its own <see cref="IBlockQueue"/>. Simple storage
/// implements <see cref="IBlockBackend"/> instead and is adapted by <see cref="SyncBlockStorage"/>.
/// </summary>
public interface IBlockStorage : IDisposable
{
    /// <summary>What the storage is and can do, fixed when it was opened (the size may change: <see cref="QuerySize"/>).</summary>
    BlockStorageInfo Info { get; }
    /// <summary>Opens the channel for virtqueue <paramref name="queue"/> with room for <paramref name="depth"/> requests in flight.</summary>
    IBlockQueue OpenQueue(int queue, int depth);
    /// <summary>The capacity in bytes now (a file or volume that was grown or shrunk); any thread.</summary>
    ulong QuerySize();
}
