using System.Diagnostics;
using VirtioSharp.Devices;
using VirtioSharp.Drivers;
using VirtioSharp.Memory;
using VirtioSharp.Testing;

namespace VirtioSharp.Tests;

using RMem = DeviceMemory<TranslatorRef, RamPort>;

/// <summary>
/// Device-initiated I/O over the real vhost-user back-end: a host thread types into the console as fast as it can
/// while the driver drains receiveq. Input reaches the ring only on its owner thread (DeviceContext.Wake), so no byte
/// is lost or duplicated and the queue never breaks — the race that once broke a real queue within seconds.
/// </summary>
public class ConsoleInputRaceTests
{
    [Fact]
    public void MillionsOfBytesTypedFromAHostThreadArriveExactlyOnceInOrder()
    {
        const int Total = 16 << 20;
        var dev = new ConsoleDevice<RMem>(maxQueueSize: 256);
        using var rig = new VhostDeviceRig(dev);
        using var fe = rig.Connect();
        using var drv = ConsoleDriver.Probe(fe, fe.Environment(), rxBuffers: 32, rxSize: 512);
        var typist = new Thread(() =>
        {
            var rnd = new Random(5);
            var chunk = new byte[4096];
            for (int sent = 0; sent < Total;)
            {
                // Keep little queued, so typing goes on for the whole run, side by side with the ring's own thread.
                while (dev.PendingInput > 4096) Thread.SpinWait(20);
                int n = Math.Min(Total - sent, rnd.Next(1, 1025));
                for (int i = 0; i < n; i++) chunk[i] = Pattern(sent + i);
                dev.Type(chunk.AsSpan(0, n));
                sent += n;
            }
        }) { IsBackground = true, Name = "typist" };
        typist.Start();
        int got = 0;
        var sw = Stopwatch.StartNew();
        while (got < Total && sw.Elapsed < TimeSpan.FromSeconds(120))
        {
            var data = drv.ReadAvailable();
            for (int i = 0; i < data.Length; i++)
                if (data[i] != Pattern(got + i)) Assert.Fail($"byte {got + i}: got {data[i]}, expected {Pattern(got + i)} (lost, duplicated or reordered input)");
            got += data.Length;
            Assert.True(got <= Total, $"{got} bytes arrived, more than the {Total} typed");
        }
        Assert.True(typist.Join(TimeSpan.FromSeconds(10)), "the typing thread did not finish");
        Assert.Equal(Total, got);
        Assert.Equal(Total, dev.Delivered);
        Assert.Equal(0, dev.PendingInput);
        Assert.Empty(rig.ResetLines);
    }

    // A sequence that does not repeat with any chunk or buffer size used here.
    private static byte Pattern(int i) => (byte)(i * 7 + (i >> 9) * 13 + (i >> 17));
}
