namespace VirtioSharp.Dma;

/// <summary>Direction of a streaming mapping, as in the Linux DMA API.</summary>
public enum DmaDirection : byte
{
    /// <summary>The device may read and write the buffer.</summary>
    Bidirectional = 0,
    /// <summary>The device only reads the buffer (driver-readable segments of a chain).</summary>
    ToDevice = 1,
    /// <summary>The device only writes the buffer (device-writable segments).</summary>
    FromDevice = 2,
}
