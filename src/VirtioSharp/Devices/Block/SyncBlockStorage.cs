namespace VirtioSharp.Devices.Block;

/// <summary>
/// A synchronous <see cref="IBlockBackend"/> as an <see cref="IBlockStorage"/>: each request runs inside
/// <see cref="IBlockQueue.Submit"/> on the queue's thread, straight between the backend and the request's vectors.
/// The simple case (in-memory disks, tests, the simulated machine); owns the backend.
/// </summary>
public sealed class SyncBlockStorage : IBlockStorage
{
    private readonly IBlockBackend _backend;

    /// <summary>Serves <paramref name="backend"/>; <paramref name="info"/> overrides what is derived from it.</summary>
    public SyncBlockStorage(IBlockBackend backend, BlockStorageInfo? info = null)
    {
        _backend = backend;
        Info = info ?? new BlockStorageInfo
        {
            Size = backend.Size,
            ReadOnly = backend.ReadOnly,
            SupportsDiscard = true,
            SupportsWriteZeroes = true,
            Description = backend.GetType().Name,
        };
    }

    /// <summary>The backend requests go to.</summary>
    public IBlockBackend Backend => _backend;
    /// <inheritdoc/>
    public BlockStorageInfo Info { get; }
    /// <inheritdoc/>
    public IBlockQueue OpenQueue(int queue, int depth) => new SyncBlockQueue(_backend, depth);
    /// <inheritdoc/>
    public ulong QuerySize() => _backend.Size;
    /// <inheritdoc/>
    public void Dispose() => _backend.Dispose();
}
