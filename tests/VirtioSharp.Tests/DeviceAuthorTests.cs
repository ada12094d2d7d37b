using VirtioSharp.Devices;
using VirtioSharp.Drivers;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;
using VirtioSharp.Testing;

namespace VirtioSharp.Tests;

/// <summary>
/// What a device author outside this repository writes: a new device on the public seam (a "zero device" that fills
/// every writable buffer with zeros through <see cref="QueueService{TMem}"/>), tested with nothing but the public
/// VirtioSharp.Testing helpers and the public driver core — over vhost-user, on the simulated machine, and at the queue.
/// </summary>
public class DeviceAuthorTests
{
    /// <summary>No standard device has this id; the driver side below is written for it.</summary>
    private const DeviceId ZeroId = (DeviceId)63;

    private sealed class ZeroDevice<TMem>(bool offerAccessPlatform = false) : IVirtioDevice<TMem> where TMem : struct, IDeviceMemory
    {
        private static readonly byte[] Zeros = new byte[4096];
        private readonly QueueService<TMem> _service = new(64);
        private DeviceContext<TMem>? _ctx;

        public long BytesZeroed;
        public DeviceId DeviceId => ZeroId;
        public ulong DeviceFeatures => VirtioFeature.Bit(VirtioFeature.Version1) | VirtioFeature.Bit(VirtioFeature.EventIdx) |
            (offerAccessPlatform ? VirtioFeature.Bit(VirtioFeature.AccessPlatform) : 0);
        public int QueueCount => 1;
        public ushort MaxQueueSize => 64;
        public int ConfigSize => 0;
        public void ReadConfig(int offset, Span<byte> destination) { }
        public void WriteConfig(int offset, ReadOnlySpan<byte> source) { }
        public bool AcceptFeatures(ulong features, out string? reason) { reason = null; return true; }
        public void Activate(DeviceContext<TMem> context) => _ctx = context;
        public void Reset() => _ctx = null;

        public void QueueNotify(int queue)
        {
            if (_ctx is not { } ctx || queue != 0) return;
            var handler = new Handler(this);
            _service.Run(ctx, 0, ref handler);
        }

        /// <summary>The device's work on one chain, usable on its own at the queue level.</summary>
        public static uint Fill(DeviceQueue<TMem> queue, DescriptorChain chain)
        {
            var writer = new ChainWriter<TMem>(queue.Memory, chain);
            for (ulong left = chain.WritableBytes; left > 0;)
            {
                int n = (int)Math.Min(left, (ulong)Zeros.Length);
                if (writer.Write(Zeros.AsSpan(0, n), out _) != MemStatus.Ok) break;
                left -= (ulong)n;
            }
            return writer.Written;
        }

        private readonly struct Handler(ZeroDevice<TMem> device) : IChainHandler<TMem>
        {
            public bool Ready => true;
            public uint Handle(DeviceQueue<TMem> queue, DescriptorChain chain)
            {
                uint n = Fill(queue, chain);
                Interlocked.Add(ref device.BytesZeroed, n);
                return n;
            }
        }
    }

    /// <summary>The driver side: one device-writable buffer pre-filled with 0xEE; returns what came back.</summary>
    private static byte[] ReadOnce(IVirtioTransport transport, DriverEnvironment env, int length)
    {
        using var dev = VirtioDriverDevice.Probe(transport, env, VirtioFeature.Bit(VirtioFeature.EventIdx), 1, 64);
        var platform = env.Platform;
        ulong gpa = platform.Allocator.Allocate((ulong)length);
        try
        {
            Assert.Equal(MemStatus.Ok, platform.Cpu.Write(gpa, Enumerable.Repeat((byte)0xEE, length).ToArray()));
            var q = dev.Queue(0);
            Assert.Equal(QueueStatus.Ok, q.Add([], [new BufferSegment(gpa, (uint)length)], "req", out _));
            dev.Kick(0);
            uint len = 0;
            bool got = false;
            Assert.True(dev.WaitUntil(() => got || (got = q.GetUsed(out _, out len) == QueueStatus.Ok)), "the device did not return the buffer");
            var back = new byte[len];
            Assert.Equal(MemStatus.Ok, platform.Cpu.Read(gpa, back));
            return back;
        }
        finally { platform.Allocator.Free(gpa, (ulong)length); }
    }

    [Fact]
    public void ZeroDeviceOverVhostUser()
    {
        var dev = new ZeroDevice<DeviceMemory<TranslatorRef, RamPort>>();
        using var rig = new VhostDeviceRig(dev);
        using (var fe = rig.Connect())
            Assert.Equal(new byte[5000], ReadOnce(fe, fe.Environment(), 5000));
        Assert.Equal(5000, Interlocked.Read(ref dev.BytesZeroed));
        Assert.Empty(rig.ResetLines);
    }

    public static TheoryData<SimTransport, DmaMode> SimModes()
    {
        var d = new TheoryData<SimTransport, DmaMode>();
        foreach (var t in new[] { SimTransport.Mmio, SimTransport.Pci })
            foreach (var m in new[] { DmaMode.Direct, DmaMode.IommuStrict, DmaMode.Bounce })
                d.Add(t, m);
        return d;
    }

    [Theory, MemberData(nameof(SimModes))]
    public void ZeroDeviceOnTheSimulatedMachine(SimTransport transport, DmaMode mode)
    {
        using var rig = new SimRig(mode);
        // Wrapped, as an author would to count what the host did to the device.
        var dev = new DelegatingDevice<DeviceMemory<TranslatorRef, PortRef>>(new ZeroDevice<DeviceMemory<TranslatorRef, PortRef>>(rig.AccessPlatform));
        rig.Add(dev, transport);
        Assert.Equal(new byte[3000], ReadOnce(rig.DriverTransport(), rig.Environment(), 3000));
        Assert.True(dev.Notifies > 0);
        rig.AssertNoLeaks("after remove");
    }

    [Fact]
    public void ZeroDeviceFillAtTheQueue()
    {
        using var rig = DmaRig.Create(DmaMode.Direct);
        using var pair = new QueuePair(rig);
        var req = pair.AddOk([], [100, 28]);
        foreach (var s in req.Writable) rig.Platform.Cpu.Write(s.Gpa, Enumerable.Repeat((byte)0xEE, (int)s.Length).ToArray());
        Assert.Equal(QueueStatus.Ok, pair.Device.Pop(out var chain));
        uint written = ZeroDevice<DeviceMemory<TranslatorRef, PortRef>>.Fill(pair.Device, chain!);
        Assert.Equal(128u, written);
        Assert.Equal(QueueStatus.Ok, pair.Device.AddUsed(chain!, written));
        Assert.Equal(QueueStatus.Ok, pair.Driver.GetUsed(out var token, out uint len));
        Assert.Same(req, token);
        Assert.Equal(128u, len);
        foreach (var s in req.Writable) Assert.Equal(new byte[s.Length], rig.CpuRead(s.Gpa, (int)s.Length));
        rig.AssertNoLeaksOrFaults(pair.RingIovaPages);
    }
}
