using System.CommandLine;
using VirtioSharp.Devices.Block;
using VirtioSharp.Storage;

namespace VirtioSharp.Cli;

/// <summary>How `vhost-user-blk` opens an image file: --cache and --aio, and the storage they make.</summary>
internal sealed class BlockFileOptions
{
    private BlockFileOptions() { }

    public required Option<string> Cache { get; init; }
    public required Option<string> Aio { get; init; }
    public required Option<bool> InlineMemoryFiles { get; init; }
    public Option[] All => [Cache, Aio, InlineMemoryFiles];

    /// <summary>An opened storage and its counters for the stats lines.</summary>
    public sealed record Opened(IBlockStorage Storage, Func<IEnumerable<(string, long)>> Counters);

    public static BlockFileOptions Create() => new()
    {
        Cache = new Option<string>("--cache")
        {
            Description = "Host caching: writeback (page cache, FLUSH = fdatasync), none (O_DIRECT; misaligned requests are " +
                "bounced and counted), writethrough (every write durable before it completes), unsafe (FLUSH does nothing)",
            DefaultValueFactory = _ => "writeback",
        }.AcceptOnlyFromAmong("writeback", "none", "writethrough", "unsafe"),
        Aio = new Option<string>("--aio")
        {
            Description = "I/O engine: sync (each request on the ring's thread), threads, io_uring (falls back to threads if the kernel refuses it)",
            DefaultValueFactory = _ => "io_uring",
        }.AcceptOnlyFromAmong("io_uring", "threads", "sync"),
        InlineMemoryFiles = new Option<bool>("--inline-memory-files")
        {
            Description = "With --aio io_uring on tmpfs, ramfs or hugetlbfs: run requests on the ring's thread (true, default), " +
                "as io_uring would hand each one to a kernel worker there; false sends every request through io_uring",
            DefaultValueFactory = _ => true,
        },
    };

    public (Opened? Storage, string? Error) Open(ParseResult r, string path, bool readOnly, int logicalBlockSize)
    {
        if (!File.Exists(path)) return (null, $"block image '{path}' does not exist; create it first (e.g. truncate -s 64M {path})");
        var storage = new FileStorage(new FileStorageOptions
        {
            Path = path,
            ReadOnly = readOnly,
            Cache = FileStorageOptions.ParseCache(r.GetValue(Cache)!),
            Aio = FileStorageOptions.ParseAio(r.GetValue(Aio)!),
            LogicalBlockSize = (uint)logicalBlockSize,
            InlineMemoryBacked = r.GetValue(InlineMemoryFiles),
        });
        var s = storage.Stats;
        return (new Opened(storage, () =>
        [
            ("o-direct-bounced", s.BouncedRequests), ("eof-zero-fills", s.EofZeroFills), ("fdatasyncs", s.Flushes),
            ("fua-writes", s.FuaWrites), ("zero-write-fallbacks", s.ZeroWriteFallbacks), ("inline", s.Inline),
            ("abandoned", s.Abandoned),
        ]), null);
    }
}
