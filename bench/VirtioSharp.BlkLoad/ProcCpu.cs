using System.Globalization;

namespace VirtioSharp.BlkLoad;

/// <summary>CPU time of a whole process (every thread, live or exited) from /proc/PID/stat utime + stime.</summary>
internal static class ProcCpu
{
    // USER_HZ: the unit of /proc/PID/stat times, 100 on every Linux architecture this runs on.
    private const double TicksPerSecond = 100;

    /// <summary>Seconds of user + system time of <paramref name="pid"/> ("self" for this process); NaN if it is gone.</summary>
    public static double Seconds(string pid)
    {
        string text;
        try { text = File.ReadAllText($"/proc/{pid}/stat"); }
        catch (IOException) { return double.NaN; }
        // The command name may contain spaces and parentheses: fields are counted after the last ')'.
        var f = text[(text.LastIndexOf(')') + 2)..].Split(' ');
        // f[0] is field 3 (state), so utime (field 14) is f[11] and stime (15) is f[12].
        return (long.Parse(f[11], CultureInfo.InvariantCulture) + long.Parse(f[12], CultureInfo.InvariantCulture)) / TicksPerSecond;
    }
}
