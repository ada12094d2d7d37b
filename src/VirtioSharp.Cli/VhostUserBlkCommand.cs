using System.CommandLine;
using Microsoft.Extensions.Logging;
using VirtioSharp.Cli.Daemon;
using VirtioSharp.Devices;
using VirtioSharp.Devices.Block;
using VirtioSharp.Memory;
using VirtioSharp.Storage.Nbd;

namespace VirtioSharp.Cli;

/// <summary>
/// `virtio-sharp vhost-user-blk`: a raw image (or an NBD export) served as a vhost-user-blk device on the shared
/// daemon host.
/// </summary>
internal static class VhostUserBlkCommand
{
    public static DeviceCommandSpec Spec()
    {
        var blkFile = new Option<string?>("--blk-file") { Description = "Raw disk image or block device to serve" };
        var blkNbd = new Option<string?>("--blk-nbd")
        {
            Description = "Serve an NBD export instead of a file: nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH",
        };
        var readOnly = new Option<bool>("--read-only") { Description = "Offer VIRTIO_BLK_F_RO; writes fail with an I/O error" };
        var queues = new Option<int>("--num-queues") { Description = "Request queues (one worker thread each)", DefaultValueFactory = _ => 1 };
        var queueSize = new Option<int>("--queue-size") { Description = "Largest queue size accepted", DefaultValueFactory = _ => 1024 };
        var lbs = new Option<int>("--logical-block-size")
        {
            Description = "Logical block size the guest sees, 512 or 4096 (0, the default: the storage's own)",
            DefaultValueFactory = _ => 0,
        };
        var watchSize = new Option<bool>("--watch-size")
        {
            Description = "Check the image's size every second and tell the guest when it changed (SIGHUP checks once in any case)",
        };
        var multiConn = new Option<bool>("--nbd-multi-conn") { Description = "NBD: one connection per queue when the server allows it (CAN_MULTI_CONN)" };
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
        var file = BlockFileOptions.Create();
        return new DeviceCommandSpec("vhost-user-blk", "Serve a raw image or an NBD export as a vhost-user-blk device to QEMU", "block", ["read-only", "blk-file"],
            [blkFile, blkNbd, readOnly, queues, queueSize, lbs, watchSize, multiConn, .. file.All, injectDelay, injectReport], (r, _) =>
            {
                string? image = r.GetValue(blkFile), nbd = r.GetValue(blkNbd);
                if ((image is null) == (nbd is null)) return (null, "give exactly one of --blk-file IMAGE or --blk-nbd URI");
                int nq = r.GetValue(queues);
                if (nq is < 1 or > 64) return (null, "--num-queues must be between 1 and 64");
                int qs = r.GetValue(queueSize);
                if (qs is < 1 or > 32768 || (qs & (qs - 1)) != 0) return (null, "--queue-size must be a power of two up to 32768");
                int blockSize = r.GetValue(lbs);
                if (blockSize is not (0 or 512 or 4096)) return (null, "--logical-block-size must be 512 or 4096");
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
                IBlockStorage storage;
                Func<IEnumerable<(string, long)>> storageCounters;
                string serial;
                try
                {
                    if (nbd is not null)
                    {
                        var o = NbdStorageOptions.Parse(nbd) with { ReadOnly = ro, MultiConn = r.GetValue(multiConn) };
                        var s = new NbdStorage(o);
                        storage = s;
                        storageCounters = () =>
                        {
                            var n = s.Stats;
                            return [("nbd-reconnects", n.Reconnects), ("nbd-resends", n.Resends), ("nbd-failed", n.Failed), ("nbd-protocol-errors", n.ProtocolErrors)];
                        };
                        serial = o.ExportName.Length > 0 ? o.ExportName : "nbd";
                    }
                    else
                    {
                        var (opened, error) = file.Open(r, image!, ro, blockSize);
                        if (opened is null) return (null, error);
                        storage = opened.Storage;
                        storageCounters = opened.Counters;
                        serial = Path.GetFileName(image!);
                    }
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or ArgumentException or InvalidOperationException)
                {
                    return (null, e.Message);
                }
                BlockDevice<DeviceMemory<TranslatorRef, RamPort>> device;
                try
                {
                    device = new BlockDevice<DeviceMemory<TranslatorRef, RamPort>>(storage, new BlockDeviceOptions
                    {
                        NumQueues = nq,
                        QueueSize = (ushort)qs,
                        BlkSize = blockSize == 0 ? 512u : (uint)blockSize,
                        OfferAccessPlatform = true,
                        OfferPacked = true,
                        Serial = serial,
                        InjectCompletionDelay = injection,
                    });
                }
                catch (ArgumentException e)
                {
                    storage.Dispose();
                    return (null, e.Message);
                }
                void Refresh(string why)
                {
                    ulong before = device.CapacitySectors;
                    if (device.RefreshCapacity())
                        log?.LogInformation("capacity changed ({Why}): {Before} -> {After} sectors; the guest was told", why, before, device.CapacitySectors);
                }
                var watcher = new Timer(_ => Refresh("--watch-size"));
                var resources = new Resources(watcher, storage);
                var info = storage.Info;
                string what = nbd ?? image!;
                return (new DaemonDevice(device,
                    $"{what} ({device.CapacitySectors} sectors, blk_size {device.BlockSize}{(info.ReadOnly ? ", read-only" : "")}; {info.Description}) with {nq} queue(s)", () =>
                    {
                        var s = device.Stats;
                        return new (string, long)[]
                        {
                            ("reads", s.Reads), ("writes", s.Writes), ("flushes", s.Flushes), ("discards", s.Discards),
                            ("write-zeroes", s.WriteZeroes), ("errors", s.Errors), ("bytes-read", s.BytesRead), ("bytes-written", s.BytesWritten),
                            ("misaligned", s.Misaligned), ("copied", s.Copied),
                        }.Concat(storageCounters());
                    }, resources, l =>
                    {
                        log = l;
                        if (injection is not null)
                            l.LogWarning("fault injection: every request is held {Delay} us before it is processed (--inject-delay-us; a test option)", delayUs);
                        if (r.GetValue(watchSize)) watcher.Change(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
                    }, () => Refresh("SIGHUP"), BlockDeviceMetrics.Create(device, what)), null);
            });
    }

    /// <summary>The timer first, so no size check runs against storage that is gone.</summary>
    private sealed class Resources(Timer watcher, IDisposable storage) : IDisposable
    {
        public void Dispose()
        {
            watcher.Dispose();
            storage.Dispose();
        }
    }
}
