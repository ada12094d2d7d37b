using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using VirtioSharp.Devices.Block;
using VirtioSharp.Interop;

namespace VirtioSharp.Storage;

/// <summary>
/// A raw image file or a block device as virtio-blk storage: cache mode (page cache, O_DIRECT, O_DSYNC, unsafe) and
/// I/O engine (io_uring, threads, sync) chosen at open, one <see cref="IBlockQueue"/> per virtqueue. DISCARD punches
/// holes (BLKDISCARD on a block device), WRITE_ZEROES uses fallocate (ZERO_RANGE, or PUNCH_HOLE with UNMAP) and writes
/// zeros where the file system refuses, FLUSH is fdatasync; reads past a shrunk file's end return zeros.
/// </summary>
public sealed class FileStorage : IBlockStorage
{
    private readonly FileTarget _target;
    private readonly FileStorageOptions _options;
    private readonly ILogger _log;
    private readonly List<FileQueue> _queues = [];
    private bool _disposed;

    /// <summary>Opens <see cref="FileStorageOptions.Path"/>; throws (FileNotFoundException, IOException, ArgumentException) with the reason.</summary>
    public FileStorage(FileStorageOptions options, ILogger? log = null)
    {
        _options = options;
        _log = log ?? NullLogger.Instance;
        if (options.LogicalBlockSize is not (0 or 512 or 4096))
            throw new ArgumentException($"logical block size {options.LogicalBlockSize}: use 512 or 4096", nameof(options));
        var opened = FileOpener.Open(options, Stats);
        _target = opened.Target;
        try
        {
            (Aio, AioReason) = ChooseAio(options);
            string inline = Aio == FileAioMode.IoUring && opened.Target.MemoryBacked && options.InlineMemoryBacked
                ? " (requests inline: a memory-backed file system has no non-blocking path)" : "";
            Info = opened.Info with { Description = $"{opened.Info.Description}, aio={FileStorageOptions.Name(Aio)}{AioReason}{inline}" };
        }
        catch
        {
            _target.Dispose();
            throw;
        }
        if (Aio != options.Aio) _log.LogWarning("block storage {Path}: {Reason}", options.Path, AioReason.TrimStart(' ', '(').TrimEnd(')'));
        _log.LogInformation("block storage: {Description}", Info.Description);
    }

    /// <inheritdoc/>
    public BlockStorageInfo Info { get; }
    /// <summary>Counters over all queues.</summary>
    public FileStorageStats Stats { get; } = new();
    /// <summary>The engine in use (io_uring may have fallen back to threads: <see cref="AioReason"/>).</summary>
    public FileAioMode Aio { get; }
    /// <summary>Why <see cref="Aio"/> differs from what was asked, as shown in Info.Description; empty if it does not.</summary>
    public string AioReason { get; }
    /// <summary>The cache mode in use.</summary>
    public FileCacheMode Cache => _target.Cache;
    /// <summary>The opened file (tests).</summary>
    internal FileTarget Target => _target;

    private (FileAioMode, string) ChooseAio(FileStorageOptions o)
    {
        if (o.Aio != FileAioMode.IoUring) return (o.Aio, "");
        int e = o.SimulateIoUringSetupErrno;
        IoUring? ring = null;
        if (e == 0) e = IoUring.TryCreate(2, out ring);
        if (e != 0)
            return (FileAioMode.Threads, $" (io_uring unavailable: io_uring_setup failed with {LibC.Describe(e)}; using threads)");
        using (ring)
        {
            // READV/WRITEV are 5.1, FSYNC 5.1, FALLOCATE 5.6; the probe itself is 5.6.
            ReadOnlySpan<byte> ops = [LibC.IORING_OP_READV, LibC.IORING_OP_WRITEV, LibC.IORING_OP_FSYNC, LibC.IORING_OP_FALLOCATE];
            e = ring!.ProbeOps(ops, out int missing);
            if (e != 0) return (FileAioMode.Threads, $" (io_uring unavailable: IORING_REGISTER_PROBE failed with {LibC.Describe(e)}, kernel older than 5.6; using threads)");
            if (missing >= 0) return (FileAioMode.Threads, $" (io_uring unavailable: opcode {missing} not supported; using threads)");
        }
        return (FileAioMode.IoUring, "");
    }

    /// <inheritdoc/>
    public IBlockQueue OpenQueue(int queue, int depth)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (depth is < 1 or > 32768) throw new ArgumentOutOfRangeException(nameof(depth), depth, "queue depth must be 1..32768");
        FileQueue q;
        switch (Aio)
        {
            case FileAioMode.Sync:
                q = new SyncFileQueue(_target, depth, _options.BounceBufferSize, Forget);
                break;
            case FileAioMode.IoUring:
                int e = IoUringFileQueue.TryCreate(_target, queue, depth, _options.BounceBufferSize, _options.DrainTimeout,
                    _target.MemoryBacked && _options.InlineMemoryBacked, Forget, out var uq);
                if (e == 0) { q = uq!; break; }
                // A ring per queue can still fail later (RLIMIT_MEMLOCK before 5.12, ring limits): this queue uses threads.
                _log.LogWarning("block storage {Path}: queue {Queue}: io_uring_setup failed with {Error}; this queue uses threads", _options.Path, queue, LibC.Describe(e));
                goto default;
            default:
                q = new ThreadedFileQueue(_target, queue, depth, _options.ThreadsPerQueue, _options.BounceBufferSize, _options.DrainTimeout, Forget);
                break;
        }
        lock (_queues) _queues.Add(q);
        return q;
    }

    private void Forget(FileQueue q)
    {
        lock (_queues) _queues.Remove(q);
    }

    /// <inheritdoc/>
    public ulong QuerySize()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return FileOpener.QuerySize(_target) & ~(ulong)(Info.LogicalBlockSize - 1);
    }

    /// <summary>Disposes queues still open (draining them), then closes the file.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        FileQueue[] left;
        lock (_queues) left = [.. _queues];
        foreach (var q in left) q.Dispose();
        if (Stats.Abandoned == 0) _target.Dispose();
        else _log.LogError("block storage {Path}: {Count} requests never completed; the file stays open", _options.Path, Stats.Abandoned);
    }
}
