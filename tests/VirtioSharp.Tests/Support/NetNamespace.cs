using System.Diagnostics;

namespace VirtioSharp.Tests.Support;

/// <summary>
/// A network namespace of its own for a test (unique name, deleted on dispose with everything in it), so TAP traffic
/// never leaves it. Needs root and iproute2: the constructor fails the test, not skips it, without them.
/// </summary>
public sealed class NetNamespace : IDisposable
{
    public NetNamespace()
    {
        Name = "vsnet-" + Guid.NewGuid().ToString("N")[..10];
        Ip("netns", "add", Name);
        Ip("-n", Name, "link", "set", "lo", "up");
    }

    public string Name { get; }

    /// <summary>Moves interface <paramref name="dev"/> in, gives it <paramref name="cidr"/> and brings it up.</summary>
    public void TakeInterface(string dev, string cidr)
    {
        Ip("link", "set", "dev", dev, "netns", Name);
        Ip("-n", Name, "addr", "add", cidr, "dev", dev);
        Ip("-n", Name, "link", "set", "dev", dev, "up");
    }

    /// <summary>Runs <c>ip -n NS args…</c> inside the namespace.</summary>
    public string In(params string[] args) => Ip(["-n", Name, .. args]);

    public static string Ip(params string[] args)
    {
        var psi = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("cannot start ip");
        string o = p.StandardOutput.ReadToEnd(), e = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"ip {string.Join(' ', args)} failed ({p.ExitCode}): {e.Trim()}");
        return o;
    }

    public void Dispose()
    {
        try { Ip("netns", "del", Name); } catch (InvalidOperationException) { }
    }
}
