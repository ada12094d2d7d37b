using System.Diagnostics;
using System.Diagnostics.Metrics;
using VirtioSharp.Memory;

namespace VirtioSharp.Devices.Block;

/// <summary>
/// A <see cref="Meter"/> named <see cref="MeterName"/> for one <see cref="BlockDevice{TMem}"/> (read live with
/// <c>dotnet-counters monitor -n virtio-sharp --counters VirtioSharp.Blk</c> or any OpenTelemetry exporter). Counters
/// and the queue depth are observable instruments over the device's own per-queue counters, read only when a listener
/// collects; the request latency histogram is recorded at completion, and only while a listener is enabled for it,
/// without allocating. Tags: <c>queue</c> (virtqueue index), <c>type</c>, <c>direction</c>, <c>kind</c>.
/// </summary>
public sealed class BlockDeviceMetrics : IDisposable
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "VirtioSharp.Blk";

    private readonly Meter _meter;
    private readonly Action _detach;

    private BlockDeviceMetrics(Meter meter, Action detach)
    {
        _meter = meter;
        _detach = detach;
    }

    /// <summary>The meter the instruments belong to.</summary>
    public Meter Meter => _meter;

    /// <summary>
    /// Publishes <paramref name="device"/>'s counters on a new meter (from <paramref name="factory"/> when given, so a
    /// host's DI container owns it); <paramref name="device"/> names the device in the meter's tags (e.g. the image).
    /// Dispose stops publishing and detaches the latency histogram from the device.
    /// </summary>
    public static BlockDeviceMetrics Create<TMem>(BlockDevice<TMem> device, string? name = null, IMeterFactory? factory = null)
        where TMem : struct, IDeviceMemory
    {
        ArgumentNullException.ThrowIfNull(device);
        var tags = name is null ? null : new[] { new KeyValuePair<string, object?>("device", name) };
        var meter = factory?.Create(new MeterOptions(MeterName) { Tags = tags }) ?? new Meter(MeterName, null, tags);
        var queues = device.QueueStates;
        var queueTag = Enumerable.Range(0, queues.Length).Select(i => new KeyValuePair<string, object?>("queue", i)).ToArray();

        IEnumerable<Measurement<long>> PerQueue(Func<BlockDeviceStats, long> read, string key, string value)
        {
            var list = new List<Measurement<long>>(queues.Length);
            for (int i = 0; i < queues.Length; i++)
                list.Add(new Measurement<long>(read(queues[i].Stats), queueTag[i], new KeyValuePair<string, object?>(key, value)));
            return list;
        }
        meter.CreateObservableCounter("virtio.blk.requests", () =>
            PerQueue(s => s.Reads, "type", "read").Concat(PerQueue(s => s.Writes, "type", "write"))
                .Concat(PerQueue(s => s.Flushes, "type", "flush")).Concat(PerQueue(s => s.Discards, "type", "discard"))
                .Concat(PerQueue(s => s.WriteZeroes, "type", "write-zeroes")),
            "{request}", "Requests completed successfully, by queue and type");
        meter.CreateObservableCounter("virtio.blk.bytes", () =>
            PerQueue(s => s.BytesRead, "direction", "read").Concat(PerQueue(s => s.BytesWritten, "direction", "write")),
            "By", "Data bytes moved between storage and guest memory, by queue and direction");
        meter.CreateObservableCounter("virtio.blk.errors", () =>
            PerQueue(s => s.Errors, "kind", "io").Concat(PerQueue(s => s.OutOfRange, "kind", "out-of-range"))
                .Concat(PerQueue(s => s.ReadOnlyRejects, "kind", "read-only")).Concat(PerQueue(s => s.Unsupported, "kind", "unsupported"))
                .Concat(PerQueue(s => s.Malformed, "kind", "malformed")).Concat(PerQueue(s => s.Misaligned, "kind", "misaligned")),
            "{request}", "Requests answered with an error status, by queue and kind");
        meter.CreateObservableCounter("virtio.blk.bounced", () => PerQueue(s => s.Copied, "path", "copy"),
            "{request}", "Requests copied through the device's own buffer instead of moving straight to guest memory");
        meter.CreateObservableGauge("virtio.blk.queue.depth", () =>
        {
            var list = new List<Measurement<int>>(queues.Length);
            for (int i = 0; i < queues.Length; i++) list.Add(new Measurement<int>(Volatile.Read(ref queues[i].IoInFlight), queueTag[i]));
            return list;
        }, "{request}", "Storage requests in flight, by queue");
        var latency = meter.CreateHistogram<double>("virtio.blk.request.duration", "s",
            "Time from taking a request off the ring to its completion, by type",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1] });
        device.Latency = latency;
        return new BlockDeviceMetrics(meter, () => { if (ReferenceEquals(device.Latency, latency)) device.Latency = null; });
    }

    /// <summary>Stops publishing.</summary>
    public void Dispose()
    {
        _detach();
        _meter.Dispose();
    }

    /// <summary>The <c>type</c> tag of each <see cref="BlockOp"/>, made once so recording allocates nothing.</summary>
    internal static readonly KeyValuePair<string, object?>[] OpTags =
        Enum.GetValues<BlockOp>().OrderBy(o => (int)o).Select(o => new KeyValuePair<string, object?>("type", o switch
        {
            BlockOp.Read => "read",
            BlockOp.Write => "write",
            BlockOp.Flush => "flush",
            BlockOp.Discard => "discard",
            BlockOp.WriteZeroes => "write-zeroes",
            _ => o.ToString().ToLowerInvariant(),
        })).ToArray();

    /// <summary>Seconds since <paramref name="started"/> (a <see cref="Stopwatch"/> timestamp).</summary>
    internal static double Since(long started) => Stopwatch.GetElapsedTime(started).TotalSeconds;
}
