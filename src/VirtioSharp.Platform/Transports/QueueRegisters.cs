namespace VirtioSharp.Platform.Transports;

/// <summary>Per-queue registers as the driver programs them.</summary>
internal sealed class QueueRegisters
{
    public ushort Size;
    public bool Ready;
    public ulong Desc, Driver, Device;
    public uint LegacyPfn;
    public void Clear() { Size = 0; Ready = false; Desc = Driver = Device = 0; LegacyPfn = 0; }
}
