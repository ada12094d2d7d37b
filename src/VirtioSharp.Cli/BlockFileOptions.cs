using System.CommandLine;
using VirtioSharp.Devices.Block;

namespace VirtioSharp.Cli;

/// <summary>How `vhost-user-blk` opens an image file: --cache and --aio, and the storage they make.</summary>
internal sealed class BlockFileOptions
{
    private BlockFileOptions() { }

    public required Option<string> Cache { get; init; }
    public required Option<string> Aio { get; init; }
    public Option[] All => [Cache, Aio];

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
            DefaultValueFactory = _ => "sync",
        }.AcceptOnlyFromAmong("io_uring", "threads", "sync"),
    };

    public (Opened? Storage, string? Error) Open(ParseResult r, string path, bool readOnly)
    {
        string cache = r.GetValue(Cache)!, aio = r.GetValue(Aio)!;
        if (cache != "writeback" || aio != "sync") return (null, $"--cache {cache} --aio {aio}: not built yet (only writeback/sync)");
        var backend = new FileBackend(path, readOnly);
        return (new Opened(new SyncBlockStorage(backend), () => []), null);
    }
}
