namespace VirtioSharp.Dma;

/// <summary>Driver-private record of one streaming mapping; the only thing unmap trusts.</summary>
public readonly record struct DmaMapping(ulong Bus, ulong Gpa, uint Length, DmaDirection Direction, ulong DeviceGpa, int Slot)
{
    /// <summary>Whether the device may write the buffer (so the CPU must sync or unmap before reading it).</summary>
    public bool DeviceWrites => Direction != DmaDirection.ToDevice;
    internal bool DeviceReads => Direction != DmaDirection.FromDevice;
}
