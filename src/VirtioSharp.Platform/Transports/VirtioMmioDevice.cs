using VirtioSharp.Devices;
using VirtioSharp.Drivers;
using VirtioSharp.Memory;
using VirtioSharp.Spec;

namespace VirtioSharp.Platform.Transports;

/// <summary>
/// A virtio-mmio device: version 2 (modern) or version 1 (legacy, with GuestPageSize/QueueAlign/QueuePFN). Registers
/// are 32-bit; the config space allows byte, half-word and word accesses.
/// </summary>
internal sealed class VirtioMmioDevice<TMem> : IRegisterBus where TMem : struct, IDeviceMemory
{
    private uint _featSel, _drvFeatSel, _queueSel;
    private ulong _drvFeatures;

    public VirtioMmioDevice(IVirtioDevice<TMem> device, TMem memory, bool legacy, string name = "virtio-mmio")
    {
        Core = new VirtioTransportCore<TMem>(device, memory, legacy, name);
    }

    public VirtioTransportCore<TMem> Core { get; }
    public bool Legacy => Core.Legacy;

    public ulong Read(ulong offset, int size)
    {
        if (offset >= MmioReg.Config)
        {
            Span<byte> b = stackalloc byte[8];
            Core.ReadConfig((int)Math.Min(offset - MmioReg.Config, int.MaxValue), b[..size]);
            return BitConverter.ToUInt64(b);
        }
        if (size != 4) { Core.Log($"mmio read of {size} bytes at 0x{offset:x}: registers are 32-bit"); return 0; }
        var q = Core.Queue((int)_queueSel);
        return offset switch
        {
            MmioReg.MagicValue => MmioReg.Magic,
            MmioReg.Version => Legacy ? 1u : 2u,
            MmioReg.DeviceId => (uint)Core.Device.DeviceId,
            MmioReg.VendorId => MmioReg.Vendor,
            MmioReg.DeviceFeatures => _featSel switch { 0 => (uint)Core.DeviceFeatures, 1 => (uint)(Core.DeviceFeatures >> 32), _ => 0u },
            MmioReg.QueueNumMax => q is null ? 0u : Core.Device.MaxQueueSize,
            MmioReg.QueueReady when !Legacy => q is { Ready: true } ? 1u : 0u,
            MmioReg.QueuePfn when Legacy => q?.LegacyPfn ?? 0,
            MmioReg.InterruptStatus => Core.InterruptStatus,
            MmioReg.Status => (uint)Core.Status,
            MmioReg.ConfigGeneration when !Legacy => Core.ConfigGeneration,
            _ => Unknown(offset, "read"),
        };
    }

    private uint Unknown(ulong offset, string what)
    {
        Core.Log($"mmio {what} of unknown or {(Legacy ? "modern-only" : "legacy-only")} register 0x{offset:x}");
        return 0;
    }

    public void Write(ulong offset, int size, ulong value)
    {
        if (offset >= MmioReg.Config)
        {
            Span<byte> b = stackalloc byte[8];
            BitConverter.TryWriteBytes(b, value);
            Core.WriteConfig((int)Math.Min(offset - MmioReg.Config, int.MaxValue), b[..size]);
            return;
        }
        if (size != 4) { Core.Log($"mmio write of {size} bytes at 0x{offset:x}: registers are 32-bit"); return; }
        uint v = (uint)value;
        int qi = (int)_queueSel;
        switch (offset)
        {
            case MmioReg.DeviceFeaturesSel: _featSel = v; break;
            case MmioReg.DriverFeaturesSel: _drvFeatSel = v; break;
            case MmioReg.DriverFeatures:
                if (_drvFeatSel > 1) { Core.Log($"driver features write with select {_drvFeatSel} ignored"); break; }
                _drvFeatures = _drvFeatSel == 0 ? (_drvFeatures & ~0xFFFF_FFFFUL) | v : (_drvFeatures & 0xFFFF_FFFFUL) | ((ulong)v << 32);
                Core.WriteDriverFeatures(_drvFeatures);
                break;
            case MmioReg.GuestPageSize when Legacy:
                if (v == 0 || (v & (v - 1)) != 0) Core.Log($"refused GuestPageSize {v}: not a power of two");
                else Core.GuestPageSize = v;
                break;
            case MmioReg.QueueSel: _queueSel = v; break;
            case MmioReg.QueueNum:
                if (Core.QueueWritable(qi, "QueueNum"))
                {
                    if (v > Core.Device.MaxQueueSize) Core.Log($"refused QueueNum {v} for queue {qi}: above QueueNumMax {Core.Device.MaxQueueSize}");
                    else Core.Queue(qi)!.Size = (ushort)v;
                }
                break;
            case MmioReg.QueueAlign when Legacy:
                if (v == 0 || (v & (v - 1)) != 0) Core.Log($"refused QueueAlign {v}: not a power of two");
                else Core.LegacyQueueAlign = v;
                break;
            case MmioReg.QueuePfn when Legacy:
                if (!Core.QueueWritable(qi, "QueuePFN")) break;
                if (v == 0) { Core.Queue(qi)!.Clear(); break; }
                Core.Queue(qi)!.LegacyPfn = v;
                Core.EnableQueue(qi);
                // A refused queue must read back PFN 0: that is how a legacy driver learns the device refused it.
                if (!Core.Queue(qi)!.Ready) Core.Queue(qi)!.LegacyPfn = 0;
                break;
            case MmioReg.QueueReady when !Legacy:
                if (!Core.QueueWritable(qi, "QueueReady")) break;
                if (v == 1) Core.EnableQueue(qi); else Core.Queue(qi)!.Ready = false;
                break;
            case MmioReg.QueueDescLow when !Legacy: SetAddr(qi, 0, v, false); break;
            case MmioReg.QueueDescHigh when !Legacy: SetAddr(qi, 0, v, true); break;
            case MmioReg.QueueDriverLow when !Legacy: SetAddr(qi, 1, v, false); break;
            case MmioReg.QueueDriverHigh when !Legacy: SetAddr(qi, 1, v, true); break;
            case MmioReg.QueueDeviceLow when !Legacy: SetAddr(qi, 2, v, false); break;
            case MmioReg.QueueDeviceHigh when !Legacy: SetAddr(qi, 2, v, true); break;
            case MmioReg.QueueNotify: Core.NotifyRegister(v); break;
            case MmioReg.InterruptAck: Core.AckInterrupt(v); break;
            case MmioReg.Status: Core.WriteStatus((DeviceStatus)(byte)v); break;
            default: Unknown(offset, "write"); break;
        }
    }

    private void SetAddr(int qi, int which, uint v, bool high)
    {
        if (!Core.QueueWritable(qi, "queue address")) return;
        var q = Core.Queue(qi)!;
        ref ulong a = ref which == 0 ? ref q.Desc : ref which == 1 ? ref q.Driver : ref q.Device;
        a = high ? (a & 0xFFFF_FFFFUL) | ((ulong)v << 32) : (a & ~0xFFFF_FFFFUL) | v;
    }
}
