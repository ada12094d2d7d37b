namespace VirtioSharp.Storage;

/// <summary>How to open a <see cref="FileStorage"/>: a raw image file or a block device.</summary>
public sealed record FileStorageOptions
{
    /// <summary>The image file or block device; it must exist.</summary>
    public required string Path { get; init; }
    /// <summary>Open read-only: writes, discards and write-zeroes fail, the device offers VIRTIO_BLK_F_RO.</summary>
    public bool ReadOnly { get; init; }
    /// <summary>Host cache mode (CLI <c>--cache none|writeback|writethrough|unsafe</c>).</summary>
    public FileCacheMode Cache { get; init; } = FileCacheMode.Writeback;
    /// <summary>I/O engine (CLI <c>--aio io_uring|threads|sync</c>).</summary>
    public FileAioMode Aio { get; init; } = FileAioMode.IoUring;
    /// <summary>
    /// 0: detected (block device sector size, O_DIRECT alignment, else 512). 512 or 4096 to override; it may not be
    /// below what O_DIRECT requires of offsets (CLI <c>--logical-block-size</c>).
    /// </summary>
    public uint LogicalBlockSize { get; init; }
    /// <summary>
    /// With <see cref="FileAioMode.IoUring"/> on a memory-backed file system (tmpfs, ramfs, hugetlbfs): run requests
    /// inline on the ring's thread (default). Those file systems have no non-blocking read/write path (no FMODE_NOWAIT),
    /// so io_uring hands every request to a kernel worker thread, which costs a hand-off and a wake-up per request
    /// (docs/PERFORMANCE.md); the copy itself never waits for a device. False: every request goes through the ring
    /// (CLI <c>--inline-memory-files false</c>).
    /// </summary>
    public bool InlineMemoryBacked { get; init; } = true;
    /// <summary>Worker threads per queue with <see cref="FileAioMode.Threads"/> (at most the queue depth).</summary>
    public int ThreadsPerQueue { get; init; } = 4;
    /// <summary>Bytes of each aligned bounce buffer for O_DIRECT requests whose memory is unaligned (one per worker, per queue).</summary>
    public int BounceBufferSize { get; init; } = 256 * 1024;
    /// <summary>How long disposing a queue waits for requests still in flight before it gives up on them (and leaks their buffers).</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Test hook: pretend io_uring_setup failed with this errno (0: really try).</summary>
    internal int SimulateIoUringSetupErrno { get; init; }

    /// <summary>Parses a CLI cache mode: none, writeback, writethrough, unsafe.</summary>
    public static FileCacheMode ParseCache(string value) => value.ToLowerInvariant() switch
    {
        "none" or "direct" => FileCacheMode.None,
        "writeback" => FileCacheMode.Writeback,
        "writethrough" => FileCacheMode.Writethrough,
        "unsafe" => FileCacheMode.Unsafe,
        _ => throw new ArgumentException($"unknown cache mode '{value}' (none, writeback, writethrough, unsafe)", nameof(value)),
    };

    /// <summary>Parses a CLI aio mode: io_uring, threads, sync.</summary>
    public static FileAioMode ParseAio(string value) => value.ToLowerInvariant() switch
    {
        "io_uring" or "io-uring" or "iouring" => FileAioMode.IoUring,
        "threads" => FileAioMode.Threads,
        "sync" => FileAioMode.Sync,
        _ => throw new ArgumentException($"unknown aio mode '{value}' (io_uring, threads, sync)", nameof(value)),
    };

    /// <summary>The CLI spelling of <paramref name="mode"/>.</summary>
    public static string Name(FileCacheMode mode) => mode switch
    {
        FileCacheMode.None => "none",
        FileCacheMode.Writethrough => "writethrough",
        FileCacheMode.Unsafe => "unsafe",
        _ => "writeback",
    };

    /// <summary>The CLI spelling of <paramref name="mode"/>.</summary>
    public static string Name(FileAioMode mode) => mode switch
    {
        FileAioMode.Threads => "threads",
        FileAioMode.Sync => "sync",
        _ => "io_uring",
    };
}
