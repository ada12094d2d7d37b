using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using VirtioSharp.Devices.Block;
using VirtioSharp.Net.Switch;

namespace VirtioSharp.Benchmarks;

/// <summary>
/// The built-in switch's own cost per frame, without rings: <see cref="NetSwitchPort.Transmit"/> on one port (copy into
/// a pooled buffer, learn, look up, queue) and <see cref="NetSwitchPort.Receive"/> on each destination (copy out,
/// release). Unicast: two ports, destination learned. Broadcast: four ports, the frame copied in once and out three
/// times. One op = one frame through the switch.
/// </summary>
[MemoryDiagnoser]
public unsafe class NetSwitchBenchmarks
{
    [Params(64, 1500)]
    public int FrameSize { get; set; }

    private NetSwitch _unicast = null!, _broadcast = null!;
    private byte* _frameU, _frameB, _rx;
    private IoVec[] _txU = null!, _txB = null!, _rxVec = null!;

    [GlobalSetup]
    public void Setup()
    {
        _unicast = Attach(new NetSwitch(2));
        _broadcast = Attach(new NetSwitch(4));
        _frameU = Frame(MacB, MacA);
        _frameB = Frame(Bcast, MacA);
        _rx = (byte*)NativeMemory.Alloc(2048);
        _txU = [new IoVec((nint)_frameU, (nuint)FrameSize)];
        _txB = [new IoVec((nint)_frameB, (nuint)FrameSize)];
        _rxVec = [new IoVec((nint)_rx, 2048)];
        // B announces itself so unicast frames to it are not flooded.
        byte* hello = Frame(Bcast, MacB);
        _unicast.Ports[1].Transmit(default, [new IoVec((nint)hello, (nuint)FrameSize)]);
        _unicast.Ports[0].Receive(_rxVec, out _);
        NativeMemory.Free(hello);
    }

    private static NetSwitch Attach(NetSwitch sw)
    {
        foreach (var p in sw.Ports) p.SetReceiveWakeup(static () => { });
        return sw;
    }

    private static readonly byte[] MacA = [0x52, 0x54, 0, 0, 0, 0x0a], MacB = [0x52, 0x54, 0, 0, 0, 0x0b], Bcast = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff];

    private byte* Frame(byte[] dst, byte[] src)
    {
        var f = (byte*)NativeMemory.AllocZeroed((nuint)FrameSize);
        dst.CopyTo(new Span<byte>(f, 6));
        src.CopyTo(new Span<byte>(f + 6, 6));
        return f;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        NativeMemory.Free(_frameU);
        NativeMemory.Free(_frameB);
        NativeMemory.Free(_rx);
    }

    [Benchmark(Baseline = true)]
    public int Unicast()
    {
        _unicast.Ports[0].Transmit(default, _txU);
        return _unicast.Ports[1].Receive(_rxVec, out _);
    }

    [Benchmark]
    public int Broadcast()
    {
        _broadcast.Ports[0].Transmit(default, _txB);
        int n = 0;
        for (int i = 1; i < 4; i++) n += _broadcast.Ports[i].Receive(_rxVec, out _);
        return n;
    }
}
