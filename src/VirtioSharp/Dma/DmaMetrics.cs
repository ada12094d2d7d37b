using System.Diagnostics.Metrics;

namespace VirtioSharp.Dma;

/// <summary>
/// A <see cref="Meter"/> named <see cref="MeterName"/> for one driver's DMA ops (the driver side of the DMA API): maps,
/// unmaps, map errors, outstanding mappings, bytes bounced through a swiotlb-like pool by direction, IOTLB
/// invalidations, cache maintenance, and (for bounce ops) the pool's slots in use and high-water mark. Observable
/// instruments over <see cref="DmaStats"/>, which the ops keep anyway, so mapping does no extra work for them.
/// </summary>
public sealed class DmaMetrics : IDisposable
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "VirtioSharp.Dma";

    private DmaMetrics(Meter meter) => Meter = meter;

    /// <summary>The meter the instruments belong to.</summary>
    public Meter Meter { get; }

    /// <summary>
    /// Publishes <paramref name="ops"/>' counters on a new meter (from <paramref name="factory"/> when given), tagged with
    /// <paramref name="device"/> and the ops' name; <paramref name="pool"/> adds the bounce pool's occupancy.
    /// </summary>
    public static DmaMetrics Create(IDmaOps ops, string device, BouncePool? pool = null, IMeterFactory? factory = null)
    {
        ArgumentNullException.ThrowIfNull(ops);
        ArgumentException.ThrowIfNullOrEmpty(device);
        var meter = factory?.Create(MeterName) ?? new Meter(MeterName);
        var s = ops.Stats;
        KeyValuePair<string, object?>[] tags = [new("device", device), new("ops", ops.Name)];
        Measurement<long> M(long value, string? key = null, string? tag = null) =>
            key is null ? new(value, tags) : new(value, [.. tags, new(key, tag)]);

        meter.CreateObservableCounter("virtio.dma.maps", () => M(Volatile.Read(ref s.Maps)), "{mapping}", "Buffers mapped for the device");
        meter.CreateObservableCounter("virtio.dma.unmaps", () => M(Volatile.Read(ref s.Unmaps)), "{mapping}", "Mappings ended");
        meter.CreateObservableCounter("virtio.dma.map_errors", () => M(Volatile.Read(ref s.MapErrors)), "{error}",
            "Maps refused (bad address, pool or IOVA space exhausted, zero length)");
        meter.CreateObservableUpDownCounter("virtio.dma.mappings.outstanding", () => M(s.Outstanding), "{mapping}", "Mappings made and not yet ended");
        meter.CreateObservableCounter("virtio.dma.bounce.bytes", () => new[]
        {
            M(Volatile.Read(ref s.BounceBytesIn), "direction", "to-device"), M(Volatile.Read(ref s.BounceBytesOut), "direction", "from-device"),
        }, "By", "Bytes copied through the bounce pool (swiotlb), by direction");
        meter.CreateObservableCounter("virtio.dma.iotlb.invalidations", () => M(Volatile.Read(ref s.Invalidations)), "{invalidation}",
            "IOMMU invalidations the ops issued (strict: one per unmap; lazy: batched)");
        meter.CreateObservableCounter("virtio.dma.cache.maintenance", () => new[]
        {
            M(Volatile.Read(ref s.CacheCleans), "op", "clean"), M(Volatile.Read(ref s.CacheInvalidates), "op", "invalidate"),
        }, "{operation}", "Cache maintenance for a non-coherent device, by operation");
        if (pool is not null)
        {
            meter.CreateObservableUpDownCounter("virtio.dma.bounce.slots.in_use", () => M(pool.SlotsInUse), "{slot}", "2 KiB bounce slots taken now");
            meter.CreateObservableGauge("virtio.dma.bounce.slots.high_water", () => M(pool.SlotsHighWater), "{slot}",
                "The most bounce slots ever taken at once (size the pool above it)");
        }
        return new DmaMetrics(meter);
    }

    /// <summary>Stops publishing.</summary>
    public void Dispose() => Meter.Dispose();
}
