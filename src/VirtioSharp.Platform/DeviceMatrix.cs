using VirtioSharp.Devices;
using VirtioSharp.Devices.Block;
using VirtioSharp.Devices.Net;
using VirtioSharp.Drivers;
using VirtioSharp.Drivers.Block;
using VirtioSharp.Drivers.Net;
using VirtioSharp.Memory;
using VirtioSharp.Platform.Transports;

namespace VirtioSharp.Platform;

/// <summary>
/// Probes virtio-blk, virtio-rng, virtio-console and virtio-net on mmio and pci in every DMA mode, runs verified I/O, removes the
/// device and checks that no IOVA, bounce slot or coherent allocation leaked.
/// </summary>
public static class DeviceMatrix
{
    private sealed record Mode(string Name, SimPlatformOptions Platform, Placement Placement, bool AccessPlatform);

    private static readonly Mode[] Modes =
    [
        new("direct", new SimPlatformOptions(), new Placement(), false),
        new("iommu", new SimPlatformOptions { HasIommu = true }, new Placement { BehindIommu = true }, true),
        new("bounce", new SimPlatformOptions { Protection = ProtectionMode.Fault }, new Placement(), true),
        new("non-coherent", new SimPlatformOptions { CpuCache = true }, new Placement { Coherent = false }, true),
    ];

    internal static IReadOnlyList<string> Transports { get; } = ["mmio", "pci"];
    internal static IReadOnlyList<string> ModeNames => Modes.Select(m => m.Name).ToList();
    /// <summary>Device types the matrix exercises.</summary>
    public static IReadOnlyList<string> Devices { get; } = ["blk", "rng", "console", "net"];

    /// <summary>Every device on every transport in every DMA mode.</summary>
    public static IEnumerable<DeviceRun> RunAll()
    {
        foreach (var t in Transports)
            foreach (var m in Modes)
                foreach (var d in Devices)
                    yield return Run(t, m.Name, d);
    }

    /// <summary>One cell: <paramref name="device"/> on <paramref name="transport"/> in the DMA mode named <paramref name="modeName"/>.</summary>
    public static DeviceRun Run(string transport, string modeName, string device)
    {
        var mode = Modes.Single(m => m.Name == modeName);
        using var machine = new SimMachine(mode.Platform);
        int baseline = machine.Platform.Allocator.UsedPages;
        IVirtioDevice<DeviceMemory<TranslatorRef, PortRef>> model = device switch
        {
            "blk" => new BlockDevice<DeviceMemory<TranslatorRef, PortRef>>(new MemoryBackend(1 << 20), new BlockDeviceOptions { OfferAccessPlatform = mode.AccessPlatform, SizeMax = 4096, SegMax = 8 }),
            "rng" => new EntropyDevice<DeviceMemory<TranslatorRef, PortRef>>(offerAccessPlatform: mode.AccessPlatform),
            "net" => new NetDevice<DeviceMemory<TranslatorRef, PortRef>>([new MemoryNetPort(loopback: true)], new NetDeviceOptions { OfferAccessPlatform = mode.AccessPlatform, QueueSize = 64 }),
            _ => new ConsoleDevice<DeviceMemory<TranslatorRef, PortRef>>(offerAccessPlatform: mode.AccessPlatform),
        };
        var slot = transport == "mmio"
            ? machine.AddMmio(model, device, legacy: false, mode.Placement)
            : machine.AddPci(model, device, PciMode.Modern, mode.Placement);
        var env = slot.Environment();
        string ops = "-", detail;
        bool verified;
        try
        {
            (verified, ops, detail) = device switch
            {
                "blk" => Blk(slot, env),
                "rng" => Rng(slot, env),
                "net" => Net(slot, env),
                _ => Console(slot, env, (ConsoleDevice<DeviceMemory<TranslatorRef, PortRef>>)model),
            };
        }
        catch (Exception e) when (e is VirtioProbeException or TimeoutException or InvalidOperationException)
        {
            verified = false;
            detail = e.Message;
        }
        var leaks = new List<string>();
        if (machine.Platform.Allocator.UsedPages != baseline) leaks.Add($"{machine.Platform.Allocator.UsedPages - baseline} guest pages");
        if (slot.Device.Domain is { MappedPages: > 0 } d) leaks.Add($"{d.MappedPages} IOMMU pages");
        if (machine.Platform.BouncePool is { SlotsInUse: > 0 } p) leaks.Add($"{p.SlotsInUse} bounce slots");
        if (leaks.Count > 0) detail += "; leaked " + string.Join(", ", leaks);
        return new DeviceRun(transport, modeName, device, ops, verified, leaks.Count > 0, detail);
    }

    private static (bool, string, string) Blk(SimSlot slot, DriverEnvironment env)
    {
        using var drv = BlkDriver.Probe(slot.DriverTransport(), env);
        var data = new byte[64 * 1024];
        new Random(7).NextBytes(data);
        bool ok = drv.Write(8, data) == BlkStatus.Ok;
        var back = new byte[data.Length];
        ok &= drv.Read(8, back) == BlkStatus.Ok && back.AsSpan().SequenceEqual(data);
        ok &= drv.Flush() == BlkStatus.Ok;
        ok &= drv.Range(BlkRequestType.WriteZeroes, 8, 8) == BlkStatus.Ok;
        ok &= drv.Read(8, back.AsSpan(0, 4096)) == BlkStatus.Ok && back.AsSpan(0, 4096).IndexOfAnyExcept((byte)0) < 0;
        return (ok, drv.Device.Dma.Name, $"64 KiB in {drv.RequestsSubmitted} requests (size_max {drv.SizeMax}, seg_max {drv.SegMax}), write-zeroes, flush");
    }

    private static (bool, string, string) Rng(SimSlot slot, DriverEnvironment env)
    {
        using var drv = EntropyDriver.Probe(slot.DriverTransport(), env);
        var a = new byte[256];
        var b = new byte[256];
        int na = drv.Read(a), nb = drv.Read(b);
        bool ok = na == 256 && nb == 256 && !a.AsSpan().SequenceEqual(b) && a.AsSpan().IndexOfAnyExcept((byte)0) >= 0;
        return (ok, drv.Device.Dma.Name, $"{na + nb} random bytes, two reads differ");
    }

    private static (bool, string, string) Net(SimSlot slot, DriverEnvironment env)
    {
        // A loopback port: every frame the driver sends comes back to its receive queue, byte for byte.
        using var drv = NetDriver.Probe(slot.DriverTransport(), env, rxBufferSize: 512);
        var rnd = new Random(11);
        bool ok = true;
        int merged = 0;
        foreach (int size in new[] { 60, 1514, 300 })
        {
            var frame = new byte[size];
            rnd.NextBytes(frame);
            ok &= drv.Send(frame);
            var got = drv.Receive();
            ok &= got.Frame.AsSpan().SequenceEqual(frame);
            merged += got.Buffers - 1;
        }
        ok &= drv.WaitForTransmits();
        return (ok, drv.Device.Dma.Name, $"3 frames looped back ({merged} extra merged buffers)");
    }

    private static (bool, string, string) Console(SimSlot slot, DriverEnvironment env, ConsoleDevice<DeviceMemory<TranslatorRef, PortRef>> model)
    {
        using var drv = ConsoleDriver.Probe(slot.DriverTransport(), env);
        var msg = "hello from the driver\n"u8.ToArray();
        drv.Write(msg);
        model.Type("typed on the host"u8);
        var got = drv.ReadAvailable();
        bool ok = model.Output.AsSpan().SequenceEqual(msg) && got.AsSpan().SequenceEqual("typed on the host"u8) && drv.Cols == 80;
        return (ok, drv.Device.Dma.Name, $"tx {msg.Length} B, rx {got.Length} B, {drv.Cols}x{drv.Rows}");
    }
}
