namespace VirtioSharp.Dma;

/// <summary>Direction of a streaming mapping, as in the Linux DMA API.</summary>
public enum DmaDirection : byte
{
    Bidirectional = 0,
    /// <summary>The device only reads the buffer (driver-readable segments of a chain).</summary>
    ToDevice = 1,
    /// <summary>The device only writes the buffer (device-writable segments).</summary>
    FromDevice = 2,
}

/// <summary>Result of a mapping or allocation; a hot-path result, not an exception.</summary>
public enum DmaStatus : byte
{
    Ok = 0,
    /// <summary>No IOVA space or bounce slots left right now; retry after completions free some.</summary>
    Exhausted,
    /// <summary>The buffer is larger than these ops can map in one piece (see MaxMappingSize).</summary>
    TooLarge,
    /// <summary>The buffer is not (entirely) guest RAM, or lies beyond the device's DMA mask.</summary>
    BadAddress,
    /// <summary>A zero-length mapping was asked for.</summary>
    Empty,
}

/// <summary>Driver-private record of one streaming mapping; the only thing unmap trusts.</summary>
public readonly record struct DmaMapping(ulong Bus, ulong Gpa, uint Length, DmaDirection Direction, ulong DeviceGpa, int Slot)
{
    public bool DeviceWrites => Direction != DmaDirection.ToDevice;
    public bool DeviceReads => Direction != DmaDirection.FromDevice;
}

/// <summary>A coherent allocation: the CPU uses <see cref="Gpa"/>, the device <see cref="Bus"/>.</summary>
public readonly record struct CoherentBuffer(ulong Gpa, ulong Bus, ulong Size);

/// <summary>Which family of DMA ops a device was given.</summary>
public enum DmaOpsKind : byte
{
    Direct,
    Iommu,
    Bounce,
}

/// <summary>Barrier strength for ring publication (virtio 1.2 §6: VIRTIO_F_ORDER_PLATFORM).</summary>
public enum BarrierKind : byte
{
    /// <summary>SMP barriers (Linux virt_*): enough when the device is software on another CPU.</summary>
    Smp,
    /// <summary>Platform (mandatory) barriers: needed when the device is real hardware or offloaded.</summary>
    Platform,
}

/// <summary>IOTLB invalidation on unmap.</summary>
public enum InvalidationMode : byte
{
    /// <summary>Invalidate at every unmap: the device loses access at once.</summary>
    Strict,
    /// <summary>Queue invalidations and flush in batches: faster, with a window where a freed IOVA still works.</summary>
    Lazy,
}

/// <summary>Counters for one DMA ops instance. Best-effort under concurrency.</summary>
public sealed class DmaStats
{
    public long Maps;
    public long Unmaps;
    public long MapErrors;
    public long SyncsForDevice;
    public long SyncsForCpu;
    public long BounceBytesIn;
    public long BounceBytesOut;
    public long Invalidations;
    public long CacheCleans;
    public long CacheInvalidates;
    public long CoherentAllocs;
    public long CoherentFrees;
    public long Outstanding => Maps - Unmaps;

    public override string ToString() =>
        $"maps={Maps} unmaps={Unmaps} errors={MapErrors} bounce-in={BounceBytesIn} bounce-out={BounceBytesOut} invalidations={Invalidations} cleans={CacheCleans} invalidates={CacheInvalidates}";
}
