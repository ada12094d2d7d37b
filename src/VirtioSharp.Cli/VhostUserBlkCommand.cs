using System.CommandLine;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using VirtioSharp.Devices.Block;
using VirtioSharp.Memory;
using VirtioSharp.VhostUser.Backend;

namespace VirtioSharp.Cli;

/// <summary>`virtio-sharp vhost-user-blk`: a vhost-user-blk back-end following vhost-user.rst's back-end program conventions.</summary>
internal static class VhostUserBlkCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var cmd = new Command("vhost-user-blk", "Serve a raw image as a vhost-user-blk device to QEMU");
        var socketPath = new Option<string?>("--socket-path") { Description = "Unix socket to listen on (incompatible with --fd)" };
        var fd = new Option<int?>("--fd") { Description = "A vhost-user socket inherited as this descriptor: connected (served once) or listening (socket activation; accepts like --socket-path)" };
        var blkFile = new Option<string?>("--blk-file") { Description = "Raw disk image to serve" };
        var readOnly = new Option<bool>("--read-only") { Description = "Offer VIRTIO_BLK_F_RO; writes fail with an I/O error" };
        var queues = new Option<int>("--num-queues") { Description = "Request queues (one worker thread each)", DefaultValueFactory = _ => 1 };
        var queueSize = new Option<int>("--queue-size") { Description = "Largest queue size accepted", DefaultValueFactory = _ => 1024 };
        var caps = new Option<bool>("--print-capabilities") { Description = "Print the back-end's capabilities as JSON and exit" };
        var stats = new Option<int>("--stats-interval") { Description = "Seconds between stats lines (0: none)", DefaultValueFactory = _ => 0 };
        var level = new Option<LogLevel>("--log-level") { Description = "Trace | Debug | Information | Warning | Error", DefaultValueFactory = _ => LogLevel.Information };
        foreach (var o in new Option[] { socketPath, fd, blkFile, readOnly, queues, queueSize, caps, stats, level }) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            if (r.GetValue(caps))
            {
                stdout.WriteLine("{\n  \"type\": \"block\",\n  \"features\": [\n    \"read-only\",\n    \"blk-file\"\n  ]\n}");
                return 0;
            }
            string? path = r.GetValue(socketPath);
            int? inherited = r.GetValue(fd);
            string? image = r.GetValue(blkFile);
            if ((path is null) == (inherited is null)) return Error(stderr, "give exactly one of --socket-path PATH or --fd N");
            if (image is null) return Error(stderr, "--blk-file IMAGE is required");
            int nq = r.GetValue(queues);
            if (nq is < 1 or > 64) return Error(stderr, "--num-queues must be between 1 and 64");
            int qs = r.GetValue(queueSize);
            if (qs is < 1 or > 32768 || (qs & (qs - 1)) != 0) return Error(stderr, "--queue-size must be a power of two up to 32768");
            return Serve(path, inherited, image, r.GetValue(readOnly), nq, (ushort)qs, r.GetValue(stats), r.GetValue(level), stderr);
        });
        return cmd;
    }

    private static int Error(TextWriter stderr, string message)
    {
        stderr.WriteLine("error: " + message);
        return 2;
    }

    private static int Serve(string? path, int? fd, string image, bool readOnly, int queues, ushort queueSize, int statsInterval, LogLevel level, TextWriter stderr)
    {
        using var factory = LoggerFactory.Create(b => b.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; }).SetMinimumLevel(level));
        var log = factory.CreateLogger("vhost-user-blk");
        FileBackend backend;
        try { backend = new FileBackend(image, readOnly); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return Error(stderr, e.Message); }
        using var _ = backend;
        var device = new BlockDevice<DeviceMemory<TranslatorRef, RamPort>>(backend, new BlockDeviceOptions
        {
            NumQueues = queues,
            QueueSize = queueSize,
            OfferAccessPlatform = true,
            OfferPacked = true,
            Serial = Path.GetFileName(image),
        });
        VhostUserServer created;
        try { created = path is not null ? new VhostUserServer(path, device, log) : new VhostUserServer(fd!.Value, device, log); }
        catch (Exception e) when (path is null && e is ArgumentException or IOException)
        {
            return Error(stderr, $"--fd: {e.Message}; start virtio-sharp with a connected or listening Unix stream socket " +
                "inherited as that descriptor (or use --socket-path PATH)");
        }
        using var server = created;
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; server.Stop(); });
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; server.Stop(); });
        log.LogInformation("serving {Image} ({Sectors} sectors{Ro}) with {Queues} queue(s) on {Where}", image, backend.Size / 512,
            readOnly ? ", read-only" : "", queues, path ?? $"fd {fd} ({(server.Listening ? "listening" : "connected")})");
        using var timer = statsInterval > 0 ? StartStats(device, server, log, statsInterval) : null;
        server.Run();
        var st = device.Stats;
        var vs = server.Stats;
        // One summary line on exit: scripts and tests read these counters.
        log.LogInformation("final stats: connections {Conn} reads {Reads} writes {Writes} flushes {Flushes} errors {Errors} bytes-read {BR} bytes-written {BW} iotlb-hits {Hits} iotlb-misses {Misses} iotlb-updates {Upd} iotlb-invalidations {Inv} resubmitted {Resub} protocol-errors {PErr}",
            vs.Connections, st.Reads, st.Writes, st.Flushes, st.Errors, st.BytesRead, st.BytesWritten, vs.IotlbHits, vs.IotlbMisses, vs.IotlbUpdates, vs.IotlbInvalidations, vs.Resubmitted, vs.ProtocolErrors);
        log.LogInformation("stopped");
        return 0;
    }

    private static Timer StartStats(BlockDevice<DeviceMemory<TranslatorRef, RamPort>> device, VhostUserServer server, ILogger log, int seconds)
    {
        long lastOps = 0, lastBytes = 0;
        return new Timer(_ =>
        {
            var s = device.Stats;
            long ops = s.Reads + s.Writes + s.Flushes + s.Discards + s.WriteZeroes;
            long bytes = s.BytesRead + s.BytesWritten;
            var (hits, misses, _, inv) = server.Current?.IotlbCounters ?? default;
            log.LogInformation("stats: {Iops:F0} IOPS, {MBps:F1} MB/s, errors {Errors}, IOTLB hits {Hits} misses {Misses} invalidations {Inv}",
                (ops - lastOps) / (double)seconds, (bytes - lastBytes) / 1e6 / seconds, s.Errors, hits, misses, inv);
            lastOps = ops;
            lastBytes = bytes;
        }, null, seconds * 1000, seconds * 1000);
    }
}
