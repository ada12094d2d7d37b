using System.CommandLine;
using VirtioSharp.Cli.Daemon;
using VirtioSharp.Devices;
using VirtioSharp.Memory;

namespace VirtioSharp.Cli;

/// <summary>`virtio-sharp vhost-user-rng`: entropy from the OS served as a vhost-user-rng device, optionally rate-limited.</summary>
internal static class VhostUserRngCommand
{
    public static DeviceCommandSpec Spec()
    {
        var rate = new Option<long>("--max-bytes-per-second") { Description = "Limit the entropy rate (0: no limit)", DefaultValueFactory = _ => 0 };
        var queueSize = new Option<int>("--queue-size") { Description = "Largest queue size accepted", DefaultValueFactory = _ => 1024 };
        return new DeviceCommandSpec("vhost-user-rng", "Serve entropy from the OS as a vhost-user-rng device to QEMU", "rng", ["max-bytes-per-second"],
            [rate, queueSize], (r, _) =>
            {
                long bps = r.GetValue(rate);
                if (bps < 0) return (null, "--max-bytes-per-second must be 0 (no limit) or more");
                int qs = r.GetValue(queueSize);
                if (qs is < 1 or > 32768 || (qs & (qs - 1)) != 0) return (null, "--queue-size must be a power of two up to 32768");
                var device = new EntropyDevice<DeviceMemory<TranslatorRef, RamPort>>(offerAccessPlatform: true, maxBytesPerSecond: bps, maxQueueSize: (ushort)qs);
                return (new DaemonDevice(device, $"entropy from the OS{(bps > 0 ? $" at most {bps} bytes/s" : "")}",
                    () => [("requests", device.Requests), ("bytes-served", device.BytesServed), ("throttled", device.Throttled)],
                    Metrics: EntropyDeviceMetrics.Create(device)), null);
            });
    }
}
