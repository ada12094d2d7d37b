using System.CommandLine;
using Microsoft.Extensions.Logging;
using VirtioSharp.Cli.Daemon;
using VirtioSharp.Devices;
using VirtioSharp.Devices.Block;
using VirtioSharp.Memory;

namespace VirtioSharp.Cli;

/// <summary>`virtio-sharp vhost-user-blk`: a raw image served as a vhost-user-blk device on the shared daemon host.</summary>
internal static class VhostUserBlkCommand
{
    public static DeviceCommandSpec Spec()
    {
        var blkFile = new Option<string?>("--blk-file") { Description = "Raw disk image to serve" };
        var readOnly = new Option<bool>("--read-only") { Description = "Offer VIRTIO_BLK_F_RO; writes fail with an I/O error" };
        var queues = new Option<int>("--num-queues") { Description = "Request queues (one worker thread each)", DefaultValueFactory = _ => 1 };
        var queueSize = new Option<int>("--queue-size") { Description = "Largest queue size accepted", DefaultValueFactory = _ => 1024 };
        var injectDelay = new Option<int>("--inject-delay-us")
        {
            Description = "FAULT INJECTION, for crash-recovery tests only (0, the default: off): hold every request this many " +
                "microseconds between pop and processing, so requests are in flight (in the inflight region, not used) when the " +
                "back-end is killed. Slows every request; never use it in service",
            DefaultValueFactory = _ => 0,
        };
        var injectReport = new Option<int>("--inject-report-held")
        {
            Description = "FAULT INJECTION (with --inject-delay-us): log a warning when a queue first holds this many requests " +
                "(again after it drained below), a crash test's cue to kill the back-end",
            DefaultValueFactory = _ => 8,
        };
        return new DeviceCommandSpec("vhost-user-blk", "Serve a raw image as a vhost-user-blk device to QEMU", "block", ["read-only", "blk-file"],
            [blkFile, readOnly, queues, queueSize, injectDelay, injectReport], r =>
            {
                string? image = r.GetValue(blkFile);
                if (image is null) return (null, "--blk-file IMAGE is required");
                int nq = r.GetValue(queues);
                if (nq is < 1 or > 64) return (null, "--num-queues must be between 1 and 64");
                int qs = r.GetValue(queueSize);
                if (qs is < 1 or > 32768 || (qs & (qs - 1)) != 0) return (null, "--queue-size must be a power of two up to 32768");
                int delayUs = r.GetValue(injectDelay), reportAt = r.GetValue(injectReport);
                if (delayUs < 0) return (null, "--inject-delay-us must be 0 (off) or more microseconds");
                if (reportAt < 1) return (null, "--inject-report-held must be at least 1");
                bool ro = r.GetValue(readOnly);
                ILogger? log = null;   // the daemon hands its logger over before serving (UseLog)
                var injection = delayUs == 0 ? null : new CompletionDelayInjection
                {
                    Delay = TimeSpan.FromMicroseconds(delayUs),
                    ReportAt = reportAt,
                    Held = (q, n) => log?.LogWarning("fault injection: vring {Queue} holds {Count} requests in flight (each for {Delay} us)", q, n, delayUs),
                };
                FileBackend backend;
                try { backend = new FileBackend(image, ro); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return (null, e.Message); }
                var device = new BlockDevice<DeviceMemory<TranslatorRef, RamPort>>(backend, new BlockDeviceOptions
                {
                    NumQueues = nq,
                    QueueSize = (ushort)qs,
                    OfferAccessPlatform = true,
                    OfferPacked = true,
                    Serial = Path.GetFileName(image),
                    InjectCompletionDelay = injection,
                });
                return (new DaemonDevice(device, $"{image} ({backend.Size / 512} sectors{(ro ? ", read-only" : "")}) with {nq} queue(s)", () =>
                {
                    var s = device.Stats;
                    return [("reads", s.Reads), ("writes", s.Writes), ("flushes", s.Flushes), ("errors", s.Errors),
                        ("bytes-read", s.BytesRead), ("bytes-written", s.BytesWritten)];
                }, backend, injection is null ? null : l =>
                {
                    log = l;
                    l.LogWarning("fault injection: every request is held {Delay} us before it is processed (--inject-delay-us; a test option)", delayUs);
                }), null);
            });
    }
}
