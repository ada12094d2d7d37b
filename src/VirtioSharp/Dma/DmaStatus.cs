namespace VirtioSharp.Dma;

/// <summary>Result of a mapping or allocation; a hot-path result, not an exception.</summary>
public enum DmaStatus : byte
{
    /// <summary>Mapped or allocated.</summary>
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
