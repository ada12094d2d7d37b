namespace VirtioSharp.Dma;

/// <summary>IOTLB invalidation on unmap.</summary>
public enum InvalidationMode : byte
{
    /// <summary>Invalidate at every unmap: the device loses access at once.</summary>
    Strict,
    /// <summary>Queue invalidations and flush in batches: faster, with a window where a freed IOVA still works.</summary>
    Lazy,
}
