using System.Buffers.Binary;
using VirtioSharp.Devices;
using VirtioSharp.Drivers;
using VirtioSharp.Memory;
using VirtioSharp.Spec;

namespace VirtioSharp.Platform.Transports;

/// <summary>
/// A virtio-pci function: 256 bytes of PCI configuration space with a capability list, a modern BAR 4 (common, ISR,
/// device and notify windows) and/or a legacy I/O BAR 0.
/// </summary>
internal sealed class VirtioPciDevice<TMem> where TMem : struct, IDeviceMemory
{
    private readonly byte[] _config = new byte[256];
    private uint _featSel, _drvFeatSel;
    private ushort _queueSel;
    private ulong _drvFeatures;

    public VirtioPciDevice(IVirtioDevice<TMem> device, TMem memory, PciMode mode, string name = "virtio-pci")
    {
        Mode = mode;
        Core = new VirtioTransportCore<TMem>(device, memory, mode == PciMode.Legacy, name) { DefaultQueueSize = device.MaxQueueSize };
        ConfigSpace = new Bus(this, Space.Config);
        if (mode != PciMode.Legacy) Bar4 = new Bus(this, Space.Bar4);
        if (mode != PciMode.Modern) Bar0 = new Bus(this, Space.Bar0);
        BuildConfigSpace(device.DeviceId);
    }

    public PciMode Mode { get; }
    public VirtioTransportCore<TMem> Core { get; }
    public IRegisterBus ConfigSpace { get; }
    public IRegisterBus? Bar4 { get; }
    public IRegisterBus? Bar0 { get; }
    public IRegisterBus? Bar(int index) => index switch { 0 => Bar0, 4 => Bar4, _ => null };

    private void BuildConfigSpace(DeviceId id)
    {
        var c = _config.AsSpan();
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x00..], PciLayout.VendorId);
        ushort pciId = Mode == PciMode.Modern ? (ushort)(0x1040 + (int)id) : LegacyPciId(id);
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x02..], pciId);
        c[0x08] = Mode == PciMode.Modern ? (byte)1 : (byte)0;   // revision: 1 for modern-only devices
        c[0x0B] = 0xFF;                                        // class: unassigned
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x2C..], PciLayout.VendorId);
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x2E..], Mode == PciMode.Modern ? (ushort)0x1100 : (ushort)id);
        if (Mode == PciMode.Legacy) return;
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x06..], 0x10);  // status: capabilities list
        c[0x34] = 0x40;
        AddCap(c, 0x40, 0x54, PciLayout.CommonCfg, PciLayout.CommonOffset, (uint)PciLayout.CommonSize, 16);
        AddCap(c, 0x54, 0x6C, PciLayout.NotifyCfg, PciLayout.NotifyOffset, 0x1000, 20);
        BinaryPrimitives.WriteUInt32LittleEndian(c[(0x54 + 16)..], PciLayout.NotifyMultiplier);
        AddCap(c, 0x6C, 0x7C, PciLayout.IsrCfg, PciLayout.IsrOffset, 1, 16);
        AddCap(c, 0x7C, 0x00, PciLayout.DeviceCfg, PciLayout.DeviceOffset, 0x1000, 16);
    }

    private static ushort LegacyPciId(DeviceId id) => id switch
    {
        DeviceId.Network => 0x1000, DeviceId.Block => 0x1001, DeviceId.Balloon => 0x1002, DeviceId.Console => 0x1003,
        DeviceId.Scsi => 0x1004, DeviceId.Entropy => 0x1005, _ => (ushort)(0x1040 + (int)id),
    };

    private static void AddCap(Span<byte> c, int at, int next, byte type, ulong offset, uint length, byte len)
    {
        c[at] = PciLayout.CapVendor;
        c[at + 1] = (byte)next;
        c[at + 2] = len;
        c[at + 3] = type;
        c[at + 4] = 4; // BAR 4
        BinaryPrimitives.WriteUInt32LittleEndian(c[(at + 8)..], (uint)offset);
        BinaryPrimitives.WriteUInt32LittleEndian(c[(at + 12)..], length);
    }

    private enum Space { Config, Bar4, Bar0 }

    private sealed class Bus(VirtioPciDevice<TMem> dev, Space space) : IRegisterBus
    {
        public ulong Read(ulong offset, int size) => space switch
        {
            Space.Config => dev.ReadConfigSpace(offset, size),
            Space.Bar4 => dev.ReadBar4(offset, size),
            _ => dev.ReadBar0(offset, size),
        };

        public void Write(ulong offset, int size, ulong value)
        {
            switch (space)
            {
                case Space.Config: dev.Core.Log($"pci config write at 0x{offset:x} ignored"); break;
                case Space.Bar4: dev.WriteBar4(offset, size, value); break;
                default: dev.WriteBar0(offset, size, value); break;
            }
        }
    }

    private ulong ReadConfigSpace(ulong offset, int size)
    {
        if (offset + (ulong)size > 256 || size is not (1 or 2 or 4)) return ulong.MaxValue >> (64 - size * 8);
        ulong v = 0;
        for (int i = size - 1; i >= 0; i--) v = (v << 8) | _config[(int)offset + i];
        return v;
    }

    private static bool Width(ulong reg, ulong offset, int size, int width) => offset == reg && size == width;

    private ulong ReadBar4(ulong offset, int size)
    {
        Core.SelectInterface(false);
        if (offset >= PciLayout.DeviceOffset && offset < PciLayout.NotifyOffset)
        {
            Span<byte> b = stackalloc byte[8];
            Core.ReadConfig((int)(offset - PciLayout.DeviceOffset), b[..size]);
            return BitConverter.ToUInt64(b);
        }
        if (offset == PciLayout.IsrOffset) return Core.ReadAndClearInterrupt();   // reading ISR acknowledges (§4.1.4.5)
        var q = Core.Queue(_queueSel);
        if (Width(PciLayout.DeviceFeatureSelect, offset, size, 4)) return _featSel;
        if (Width(PciLayout.DeviceFeature, offset, size, 4))
            return _featSel switch { 0 => (uint)Core.DeviceFeatures, 1 => (uint)(Core.DeviceFeatures >> 32), _ => 0u };
        if (Width(PciLayout.DriverFeatureSelect, offset, size, 4)) return _drvFeatSel;
        if (Width(PciLayout.DriverFeature, offset, size, 4)) return _drvFeatSel == 0 ? (uint)_drvFeatures : (uint)(_drvFeatures >> 32);
        if (Width(PciLayout.MsixConfig, offset, size, 2)) return 0xFFFF;
        if (Width(PciLayout.NumQueues, offset, size, 2)) return (ulong)Core.QueueCount;
        if (Width(PciLayout.DeviceStatus, offset, size, 1)) return (byte)Core.Status;
        if (Width(PciLayout.ConfigGeneration, offset, size, 1)) return Core.ConfigGeneration;
        if (Width(PciLayout.QueueSelect, offset, size, 2)) return _queueSel;
        if (Width(PciLayout.QueueSize, offset, size, 2)) return q is null ? 0UL : q.Size;
        if (Width(PciLayout.QueueMsixVector, offset, size, 2)) return 0xFFFF;
        if (Width(PciLayout.QueueEnable, offset, size, 2)) return q is { Ready: true } ? 1u : 0u;
        if (Width(PciLayout.QueueNotifyOff, offset, size, 2)) return q is null ? 0u : _queueSel;
        if (Width(PciLayout.QueueDesc, offset, size, 8)) return q?.Desc ?? 0;
        if (Width(PciLayout.QueueDriver, offset, size, 8)) return q?.Driver ?? 0;
        if (Width(PciLayout.QueueDevice, offset, size, 8)) return q?.Device ?? 0;
        Core.Log($"pci BAR4 read of {size} bytes at 0x{offset:x}: no such register");
        return 0;
    }

    private void WriteBar4(ulong offset, int size, ulong value)
    {
        Core.SelectInterface(false);
        if (offset >= PciLayout.DeviceOffset && offset < PciLayout.NotifyOffset)
        {
            Span<byte> b = stackalloc byte[8];
            BitConverter.TryWriteBytes(b, value);
            Core.WriteConfig((int)(offset - PciLayout.DeviceOffset), b[..size]);
            return;
        }
        if (offset >= PciLayout.NotifyOffset && offset < PciLayout.NotifyOffset + 0x1000)
        {
            ulong rel = offset - PciLayout.NotifyOffset;
            if (rel % PciLayout.NotifyMultiplier != 0) { Core.Log($"notify write at unaligned offset 0x{rel:x}"); return; }
            int nq = (int)(rel / PciLayout.NotifyMultiplier);
            if (size == 4) Core.NotifyWithData(nq, (uint)value); else Core.Notify(nq);
            return;
        }
        int qi = _queueSel;
        if (Width(PciLayout.DeviceFeatureSelect, offset, size, 4)) { _featSel = (uint)value; return; }
        if (Width(PciLayout.DriverFeatureSelect, offset, size, 4)) { _drvFeatSel = (uint)value; return; }
        if (Width(PciLayout.DriverFeature, offset, size, 4))
        {
            if (_drvFeatSel > 1) { Core.Log($"driver feature write with select {_drvFeatSel} ignored"); return; }
            _drvFeatures = _drvFeatSel == 0 ? (_drvFeatures & ~0xFFFF_FFFFUL) | (uint)value : (_drvFeatures & 0xFFFF_FFFFUL) | (value << 32);
            Core.WriteDriverFeatures(_drvFeatures);
            return;
        }
        if (Width(PciLayout.DeviceStatus, offset, size, 1)) { Core.WriteStatus((DeviceStatus)(byte)value); if (value == 0) _drvFeatures = 0; return; }
        if (Width(PciLayout.QueueSelect, offset, size, 2)) { _queueSel = (ushort)value; return; }
        if (Width(PciLayout.MsixConfig, offset, size, 2) || Width(PciLayout.QueueMsixVector, offset, size, 2)) return;
        if (Width(PciLayout.QueueSize, offset, size, 2))
        {
            if (!Core.QueueWritable(qi, "queue_size")) return;
            if (value > Core.Device.MaxQueueSize) { Core.Log($"refused queue_size {value} for queue {qi}: above the maximum {Core.Device.MaxQueueSize}"); return; }
            Core.Queue(qi)!.Size = (ushort)value;
            return;
        }
        if (Width(PciLayout.QueueEnable, offset, size, 2))
        {
            if (!Core.QueueWritable(qi, "queue_enable")) return;
            // §4.1.4.3.2: the driver MUST NOT write 0 to queue_enable.
            if (value == 1) Core.EnableQueue(qi); else Core.Log($"refused queue_enable {value} on queue {qi}");
            return;
        }
        foreach (var (reg, which) in new[] { (PciLayout.QueueDesc, 0), (PciLayout.QueueDriver, 1), (PciLayout.QueueDevice, 2) })
        {
            bool lo = Width(reg, offset, size, 4) || Width(reg, offset, size, 8), hi = Width(reg + 4, offset, size, 4);
            if (!lo && !hi) continue;
            if (!Core.QueueWritable(qi, "queue address")) return;
            var q = Core.Queue(qi)!;
            ref ulong a = ref which == 0 ? ref q.Desc : ref which == 1 ? ref q.Driver : ref q.Device;
            a = size == 8 ? value : hi ? (a & 0xFFFF_FFFFUL) | (value << 32) : (a & ~0xFFFF_FFFFUL) | (uint)value;
            return;
        }
        Core.Log($"pci BAR4 write of {size} bytes at 0x{offset:x}: no such register");
    }

    private ulong ReadBar0(ulong offset, int size)
    {
        Core.SelectInterface(true);
        if (offset >= PciLayout.LegacyConfig)
        {
            Span<byte> b = stackalloc byte[8];
            Core.ReadConfig((int)(offset - PciLayout.LegacyConfig), b[..size]);
            return BitConverter.ToUInt64(b);
        }
        var q = Core.Queue(_queueSel);
        if (Width(PciLayout.LegacyHostFeatures, offset, size, 4)) return (uint)Core.DeviceFeatures;
        if (Width(PciLayout.LegacyGuestFeatures, offset, size, 4)) return (uint)Core.DriverFeatures;
        if (Width(PciLayout.LegacyQueueAddress, offset, size, 4)) return q?.LegacyPfn ?? 0;
        if (Width(PciLayout.LegacyQueueSize, offset, size, 2)) return q is null ? 0u : Core.Device.MaxQueueSize;
        if (Width(PciLayout.LegacyQueueSelect, offset, size, 2)) return _queueSel;
        if (Width(PciLayout.LegacyStatus, offset, size, 1)) return (byte)Core.Status;
        if (Width(PciLayout.LegacyIsr, offset, size, 1)) return Core.ReadAndClearInterrupt();
        Core.Log($"pci legacy read of {size} bytes at 0x{offset:x}: no such register");
        return 0;
    }

    private void WriteBar0(ulong offset, int size, ulong value)
    {
        Core.SelectInterface(true);
        if (offset >= PciLayout.LegacyConfig)
        {
            Span<byte> b = stackalloc byte[8];
            BitConverter.TryWriteBytes(b, value);
            Core.WriteConfig((int)(offset - PciLayout.LegacyConfig), b[..size]);
            return;
        }
        int qi = _queueSel;
        if (Width(PciLayout.LegacyGuestFeatures, offset, size, 4)) { Core.WriteDriverFeatures((uint)value); return; }
        if (Width(PciLayout.LegacyQueueSelect, offset, size, 2)) { _queueSel = (ushort)value; return; }
        if (Width(PciLayout.LegacyQueueAddress, offset, size, 4))
        {
            if (!Core.QueueWritable(qi, "queue address")) return;
            var q = Core.Queue(qi)!;
            if (value == 0) { q.Clear(); return; }
            // Legacy PCI queues have the device's maximum size and 4096 alignment (§4.1.4.8).
            q.Size = Core.Device.MaxQueueSize;
            q.LegacyPfn = (uint)value;
            Core.EnableQueue(qi);
            // A refused queue must read back address 0: that is how a legacy driver learns the device refused it.
            if (!q.Ready) q.LegacyPfn = 0;
            return;
        }
        if (Width(PciLayout.LegacyQueueNotify, offset, size, 2)) { Core.Notify((int)value); return; }
        if (Width(PciLayout.LegacyStatus, offset, size, 1)) { Core.WriteStatus((DeviceStatus)(byte)value); return; }
        Core.Log($"pci legacy write of {size} bytes at 0x{offset:x}: no such register");
    }
}
